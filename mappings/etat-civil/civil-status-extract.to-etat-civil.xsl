<?xml version="1.0" encoding="UTF-8"?>
<!-- Canonical CivilStatusExtractRequest (in its envelope) -> ETAT_CIVIL DemandeExtrait.
     Only what the register needs to find the act and check it is the right person (law 09-08):
     no registration id, no CNIE, no address. Dates become AAAAMMJJ; act kinds French. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:cs="urn:ma:gov:consular:civil-status:1"
    xmlns="urn:ma:interieur:etat-civil:1"
    exclude-result-prefixes="env cs">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template name="nature">
    <xsl:param name="kind"/>
    <xsl:choose>
      <xsl:when test="$kind = 'BIRTH'">NAISSANCE</xsl:when>
      <xsl:when test="$kind = 'MARRIAGE'">MARIAGE</xsl:when>
      <xsl:when test="$kind = 'DEATH'">DECES</xsl:when>
      <xsl:otherwise><xsl:message terminate="yes">unknown act kind <xsl:value-of select="$kind"/></xsl:message></xsl:otherwise>
    </xsl:choose>
  </xsl:template>

  <xsl:template match="/env:Message">
    <xsl:variable name="req" select="env:Body/cs:CivilStatusExtractRequest"/>
    <DemandeExtrait>
      <IdentifiantMessage><xsl:value-of select="env:Header/env:MessageId"/></IdentifiantMessage>
      <ReferenceDossier><xsl:value-of select="env:Header/env:CorrelationId"/></ReferenceDossier>
      <DateEmission><xsl:value-of select="env:Header/env:Created"/></DateEmission>
      <PosteConsulaire><xsl:value-of select="$req/cs:Post"/></PosteConsulaire>
      <Acte>
        <Bureau><xsl:value-of select="$req/cs:Act/cs:Office"/></Bureau>
        <Annee><xsl:value-of select="$req/cs:Act/cs:Year"/></Annee>
        <NumeroActe><xsl:value-of select="$req/cs:Act/cs:Number"/></NumeroActe>
        <Nature>
          <xsl:call-template name="nature"><xsl:with-param name="kind" select="$req/cs:Act/cs:Kind"/></xsl:call-template>
        </Nature>
      </Acte>
      <Personne>
        <NomLatin><xsl:value-of select="$req/cs:Subject/cs:LatinName/cs:Family"/></NomLatin>
        <PrenomLatin><xsl:value-of select="$req/cs:Subject/cs:LatinName/cs:Given"/></PrenomLatin>
        <NomArabe><xsl:value-of select="$req/cs:Subject/cs:ArabicName/cs:Family"/></NomArabe>
        <PrenomArabe><xsl:value-of select="$req/cs:Subject/cs:ArabicName/cs:Given"/></PrenomArabe>
        <DateNaissance><xsl:value-of select="translate($req/cs:Subject/cs:BirthDate, '-', '')"/></DateNaissance>
      </Personne>
    </DemandeExtrait>
  </xsl:template>
</xsl:stylesheet>
