<?xml version="1.0" encoding="UTF-8"?>
<!-- Canonical ConsularRegistrationRequest (in its envelope) -> DGSN VerifierIdentite.
     Only what the identity check needs travels (law 09-08, minimisation): CNIE, names in both
     scripts, birth date. No address, no contact details, no registration id. Dates become JJ/MM/AAAA.
     The canonical MessageId travels as IdentifiantMessage: DGSN echoes it as ReferenceDemande. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:reg="urn:ma:gov:consular:registration:1"
    xmlns="urn:ma:dgsn:services-consulaires:1"
    exclude-result-prefixes="env reg">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template name="date-jma">
    <xsl:param name="iso"/>
    <xsl:value-of select="concat(substring($iso, 9, 2), '/', substring($iso, 6, 2), '/', substring($iso, 1, 4))"/>
  </xsl:template>

  <xsl:template match="/env:Message">
    <xsl:variable name="req" select="env:Body/reg:ConsularRegistrationRequest"/>
    <VerifierIdentite>
      <IdentifiantMessage><xsl:value-of select="env:Header/env:MessageId"/></IdentifiantMessage>
      <ReferenceDossier><xsl:value-of select="env:Header/env:CorrelationId"/></ReferenceDossier>
      <DateEmission><xsl:value-of select="env:Header/env:Created"/></DateEmission>
      <PosteConsulaire><xsl:value-of select="$req/reg:Post"/></PosteConsulaire>
      <Personne>
        <xsl:if test="$req/reg:Person/reg:Cnie">
          <CNIE><xsl:value-of select="$req/reg:Person/reg:Cnie"/></CNIE>
        </xsl:if>
        <Nom><xsl:value-of select="$req/reg:Person/reg:LatinName/reg:Family"/></Nom>
        <Prenom><xsl:value-of select="$req/reg:Person/reg:LatinName/reg:Given"/></Prenom>
        <NomArabe><xsl:value-of select="$req/reg:Person/reg:ArabicName/reg:Family"/></NomArabe>
        <PrenomArabe><xsl:value-of select="$req/reg:Person/reg:ArabicName/reg:Given"/></PrenomArabe>
        <DateNaissance>
          <xsl:call-template name="date-jma"><xsl:with-param name="iso" select="$req/reg:Person/reg:BirthDate"/></xsl:call-template>
        </DateNaissance>
      </Personne>
    </VerifierIdentite>
  </xsl:template>
</xsl:stylesheet>
