<?xml version="1.0" encoding="UTF-8"?>
<!-- Canonical RepatriationRequest -> DGSN DemanderAutorisationPassageFrontiere (border clearance of
     the coffin at its entry point). Minimisation (law 09-08): the cause of death is health data and
     goes to SANTE only; DGSN gets the identity of the deceased, the date and place of death, the
     transfer (entry point, arrival, carrier, seal) and the commune of burial. Dates become JJ/MM/AAAA. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:rep="urn:ma:gov:consular:repatriation:1"
    xmlns="urn:ma:dgsn:services-consulaires:1"
    exclude-result-prefixes="env rep">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template name="date-jma">
    <xsl:param name="iso"/>
    <xsl:value-of select="concat(substring($iso, 9, 2), '/', substring($iso, 6, 2), '/', substring($iso, 1, 4))"/>
  </xsl:template>

  <xsl:template match="/env:Message">
    <xsl:variable name="req" select="env:Body/rep:RepatriationRequest"/>
    <DemanderAutorisationPassageFrontiere>
      <IdentifiantMessage><xsl:value-of select="env:Header/env:MessageId"/></IdentifiantMessage>
      <ReferenceDossier><xsl:value-of select="env:Header/env:CorrelationId"/></ReferenceDossier>
      <DateEmission><xsl:value-of select="env:Header/env:Created"/></DateEmission>
      <PosteConsulaire><xsl:value-of select="$req/rep:Post"/></PosteConsulaire>
      <Defunt>
        <xsl:if test="$req/rep:Deceased/rep:Cnie">
          <CNIE><xsl:value-of select="$req/rep:Deceased/rep:Cnie"/></CNIE>
        </xsl:if>
        <Nom><xsl:value-of select="$req/rep:Deceased/rep:LatinName/rep:Family"/></Nom>
        <Prenom><xsl:value-of select="$req/rep:Deceased/rep:LatinName/rep:Given"/></Prenom>
        <NomArabe><xsl:value-of select="$req/rep:Deceased/rep:ArabicName/rep:Family"/></NomArabe>
        <PrenomArabe><xsl:value-of select="$req/rep:Deceased/rep:ArabicName/rep:Given"/></PrenomArabe>
        <DateNaissance>
          <xsl:call-template name="date-jma"><xsl:with-param name="iso" select="$req/rep:Deceased/rep:BirthDate"/></xsl:call-template>
        </DateNaissance>
        <Sexe><xsl:value-of select="$req/rep:Deceased/rep:Sex"/></Sexe>
      </Defunt>
      <Deces>
        <Date>
          <xsl:call-template name="date-jma"><xsl:with-param name="iso" select="$req/rep:Death/rep:Date"/></xsl:call-template>
        </Date>
        <Pays><xsl:value-of select="$req/rep:Death/rep:Country"/></Pays>
        <Ville><xsl:value-of select="$req/rep:Death/rep:City"/></Ville>
      </Deces>
      <Transfert>
        <PointEntree><xsl:value-of select="$req/rep:Transport/rep:EntryPoint"/></PointEntree>
        <DateArrivee>
          <xsl:call-template name="date-jma"><xsl:with-param name="iso" select="$req/rep:Transport/rep:ArrivalDate"/></xsl:call-template>
        </DateArrivee>
        <Transporteur><xsl:value-of select="$req/rep:Transport/rep:Carrier"/></Transporteur>
        <NumeroScelle><xsl:value-of select="$req/rep:Transport/rep:SealNumber"/></NumeroScelle>
        <CommuneInhumation><xsl:value-of select="$req/rep:Burial/rep:Commune"/></CommuneInhumation>
      </Transfert>
    </DemanderAutorisationPassageFrontiere>
  </xsl:template>
</xsl:stylesheet>
