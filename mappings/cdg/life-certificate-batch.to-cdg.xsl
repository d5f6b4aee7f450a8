<?xml version="1.0" encoding="UTF-8"?>
<!-- Canonical LifeCertificateBatch (in its envelope) -> CDG LotCertificatsVie.
     Only what the pension funds need travels (law 09-08, minimisation): the pensioner's Latin name,
     birth date, CNIE, pension number and fund, the issue date and the post; no registration id, no
     Arabic name, no address; for a death notice only the name, pension and date of death (never the
     cause, which goes to SANTE only). Dates become JJ/MM/AAAA. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:pen="urn:ma:gov:consular:pension:1"
    xmlns="urn:ma:cdg:certificats-vie:1"
    exclude-result-prefixes="env pen">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template name="date-jma">
    <xsl:param name="iso"/>
    <xsl:value-of select="concat(substring($iso, 9, 2), '/', substring($iso, 6, 2), '/', substring($iso, 1, 4))"/>
  </xsl:template>

  <xsl:template match="/env:Message">
    <xsl:variable name="batch" select="env:Body/pen:LifeCertificateBatch"/>
    <LotCertificatsVie>
      <IdentifiantMessage><xsl:value-of select="env:Header/env:MessageId"/></IdentifiantMessage>
      <IdentifiantLot><xsl:value-of select="$batch/pen:BatchReference"/></IdentifiantLot>
      <DateCreation><xsl:value-of select="$batch/pen:CreatedAt"/></DateCreation>
      <NombreCertificats><xsl:value-of select="count($batch/pen:Certificate)"/></NombreCertificats>
      <NombreAvisDeces><xsl:value-of select="count($batch/pen:DeathNotice)"/></NombreAvisDeces>
      <Certificats>
        <xsl:for-each select="$batch/pen:Certificate">
          <Certificat>
            <Reference><xsl:value-of select="pen:CaseReference"/></Reference>
            <NomPensionne><xsl:value-of select="pen:Pensioner/pen:LatinName/pen:Family"/></NomPensionne>
            <PrenomPensionne><xsl:value-of select="pen:Pensioner/pen:LatinName/pen:Given"/></PrenomPensionne>
            <DateNaissance>
              <xsl:call-template name="date-jma"><xsl:with-param name="iso" select="pen:Pensioner/pen:BirthDate"/></xsl:call-template>
            </DateNaissance>
            <xsl:if test="pen:Pensioner/pen:Cnie">
              <CNIE><xsl:value-of select="pen:Pensioner/pen:Cnie"/></CNIE>
            </xsl:if>
            <NumeroPension><xsl:value-of select="pen:PensionNumber"/></NumeroPension>
            <Caisse><xsl:value-of select="pen:Fund"/></Caisse>
            <DateEtablissement>
              <xsl:call-template name="date-jma"><xsl:with-param name="iso" select="pen:IssueDate"/></xsl:call-template>
            </DateEtablissement>
            <PosteConsulaire><xsl:value-of select="pen:Post"/></PosteConsulaire>
          </Certificat>
        </xsl:for-each>
      </Certificats>
      <AvisDeces>
        <xsl:for-each select="$batch/pen:DeathNotice">
          <Avis>
            <Reference><xsl:value-of select="pen:CaseReference"/></Reference>
            <NumeroPension><xsl:value-of select="pen:PensionNumber"/></NumeroPension>
            <Caisse><xsl:value-of select="pen:Fund"/></Caisse>
            <NomDefunt><xsl:value-of select="pen:Deceased/pen:Family"/></NomDefunt>
            <PrenomDefunt><xsl:value-of select="pen:Deceased/pen:Given"/></PrenomDefunt>
            <DateDeces>
              <xsl:call-template name="date-jma"><xsl:with-param name="iso" select="pen:DateOfDeath"/></xsl:call-template>
            </DateDeces>
          </Avis>
        </xsl:for-each>
      </AvisDeces>
    </LotCertificatsVie>
  </xsl:template>
</xsl:stylesheet>
