<?xml version="1.0" encoding="UTF-8"?>
<!-- Canonical LicenceAuthenticationRequest (in its envelope) -> NARSA DemandeAuthentification.
     Only the fields NARSA needs for the check travel (law 09-08, minimisation): no address,
     no contact details, no registration id. Dates become JJ/MM/AAAA. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:lic="urn:ma:gov:consular:licence:1"
    xmlns="urn:ma:narsa:authentification-permis:1"
    exclude-result-prefixes="env lic">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template name="date-jma">
    <xsl:param name="iso"/>
    <xsl:value-of select="concat(substring($iso, 9, 2), '/', substring($iso, 6, 2), '/', substring($iso, 1, 4))"/>
  </xsl:template>

  <xsl:template match="/env:Message">
    <xsl:variable name="req" select="env:Body/lic:LicenceAuthenticationRequest"/>
    <DemandeAuthentification>
      <IdentifiantMessage><xsl:value-of select="env:Header/env:MessageId"/></IdentifiantMessage>
      <ReferenceDossier><xsl:value-of select="env:Header/env:CorrelationId"/></ReferenceDossier>
      <DateEmission><xsl:value-of select="env:Header/env:Created"/></DateEmission>
      <PosteConsulaire><xsl:value-of select="$req/lic:Post"/></PosteConsulaire>
      <Titulaire>
        <Nom><xsl:value-of select="$req/lic:Holder/lic:LatinName/lic:Family"/></Nom>
        <Prenom><xsl:value-of select="$req/lic:Holder/lic:LatinName/lic:Given"/></Prenom>
        <NomArabe><xsl:value-of select="$req/lic:Holder/lic:ArabicName/lic:Family"/></NomArabe>
        <PrenomArabe><xsl:value-of select="$req/lic:Holder/lic:ArabicName/lic:Given"/></PrenomArabe>
        <DateNaissance>
          <xsl:call-template name="date-jma"><xsl:with-param name="iso" select="$req/lic:Holder/lic:BirthDate"/></xsl:call-template>
        </DateNaissance>
        <xsl:if test="$req/lic:Holder/lic:Cnie">
          <CNIE><xsl:value-of select="$req/lic:Holder/lic:Cnie"/></CNIE>
        </xsl:if>
      </Titulaire>
      <Permis>
        <NumeroPermis><xsl:value-of select="$req/lic:Licence/lic:Number"/></NumeroPermis>
        <Categories>
          <xsl:for-each select="$req/lic:Licence/lic:Category">
            <Categorie><xsl:value-of select="."/></Categorie>
          </xsl:for-each>
        </Categories>
        <DateDelivrance>
          <xsl:call-template name="date-jma"><xsl:with-param name="iso" select="$req/lic:Licence/lic:IssueDate"/></xsl:call-template>
        </DateDelivrance>
      </Permis>
      <PaysResidence><xsl:value-of select="$req/lic:CountryOfResidence"/></PaysResidence>
    </DemandeAuthentification>
  </xsl:template>
</xsl:stylesheet>
