<?xml version="1.0" encoding="UTF-8"?>
<!-- Canonical RepatriationRequest (in its envelope) -> ETAT_CIVIL AvisInhumation for the commune of
     burial. Minimisation (law 09-08): the deceased's identity, the date of death, the commune, the
     entry point and the arrival date; NEVER the cause of death (health data goes to SANTE only),
     nor the carrier or the seal. Dates become AAAAMMJJ. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:rep="urn:ma:gov:consular:repatriation:1"
    xmlns="urn:ma:interieur:etat-civil:1"
    exclude-result-prefixes="env rep">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template name="amj">
    <xsl:param name="iso"/>
    <xsl:value-of select="translate(substring($iso, 1, 10), '-', '')"/>
  </xsl:template>

  <xsl:template match="/env:Message">
    <xsl:variable name="req" select="env:Body/rep:RepatriationRequest"/>
    <xsl:variable name="who" select="$req/rep:Deceased"/>
    <AvisInhumation>
      <IdentifiantMessage><xsl:value-of select="env:Header/env:MessageId"/></IdentifiantMessage>
      <ReferenceDossier><xsl:value-of select="env:Header/env:CorrelationId"/></ReferenceDossier>
      <DateEmission><xsl:value-of select="env:Header/env:Created"/></DateEmission>
      <PosteConsulaire><xsl:value-of select="$req/rep:Post"/></PosteConsulaire>
      <Defunt>
        <NomLatin><xsl:value-of select="$who/rep:LatinName/rep:Family"/></NomLatin>
        <PrenomLatin><xsl:value-of select="$who/rep:LatinName/rep:Given"/></PrenomLatin>
        <NomArabe><xsl:value-of select="$who/rep:ArabicName/rep:Family"/></NomArabe>
        <PrenomArabe><xsl:value-of select="$who/rep:ArabicName/rep:Given"/></PrenomArabe>
        <Sexe><xsl:value-of select="$who/rep:Sex"/></Sexe>
        <DateNaissance>
          <xsl:call-template name="amj"><xsl:with-param name="iso" select="$who/rep:BirthDate"/></xsl:call-template>
        </DateNaissance>
        <xsl:if test="$who/rep:Cnie">
          <CNIE><xsl:value-of select="$who/rep:Cnie"/></CNIE>
        </xsl:if>
      </Defunt>
      <DateDeces>
        <xsl:call-template name="amj"><xsl:with-param name="iso" select="$req/rep:Death/rep:Date"/></xsl:call-template>
      </DateDeces>
      <CommuneInhumation>
        <Code><xsl:value-of select="$req/rep:Burial/rep:Commune"/></Code>
        <Nom><xsl:value-of select="$req/rep:Burial/rep:CommuneName"/></Nom>
        <xsl:if test="$req/rep:Burial/rep:Province">
          <Province><xsl:value-of select="$req/rep:Burial/rep:Province"/></Province>
        </xsl:if>
      </CommuneInhumation>
      <PointEntree><xsl:value-of select="$req/rep:Transport/rep:EntryPoint"/></PointEntree>
      <DateArrivee>
        <xsl:call-template name="amj"><xsl:with-param name="iso" select="$req/rep:Transport/rep:ArrivalDate"/></xsl:call-template>
      </DateArrivee>
    </AvisInhumation>
  </xsl:template>
</xsl:stylesheet>
