<?xml version="1.0" encoding="UTF-8"?>
<!-- Canonical TranscriptionRequest (in its envelope) -> ETAT_CIVIL DemandeTranscription.
     The applicant's registration id stays with the consulate (law 09-08); the register gets the
     event, the foreign act, the person and, when given, the parents. Dates become AAAAMMJJ. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:cs="urn:ma:gov:consular:civil-status:1"
    xmlns="urn:ma:interieur:etat-civil:1"
    exclude-result-prefixes="env cs">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template name="names">
    <xsl:param name="who"/>
    <NomLatin><xsl:value-of select="$who/cs:LatinName/cs:Family"/></NomLatin>
    <PrenomLatin><xsl:value-of select="$who/cs:LatinName/cs:Given"/></PrenomLatin>
    <NomArabe><xsl:value-of select="$who/cs:ArabicName/cs:Family"/></NomArabe>
    <PrenomArabe><xsl:value-of select="$who/cs:ArabicName/cs:Given"/></PrenomArabe>
  </xsl:template>

  <xsl:template match="/env:Message">
    <xsl:variable name="req" select="env:Body/cs:TranscriptionRequest"/>
    <DemandeTranscription>
      <IdentifiantMessage><xsl:value-of select="env:Header/env:MessageId"/></IdentifiantMessage>
      <ReferenceDossier><xsl:value-of select="env:Header/env:CorrelationId"/></ReferenceDossier>
      <DateEmission><xsl:value-of select="env:Header/env:Created"/></DateEmission>
      <PosteConsulaire><xsl:value-of select="$req/cs:Post"/></PosteConsulaire>
      <Evenement>
        <xsl:choose>
          <xsl:when test="$req/cs:Event = 'BIRTH'">NAISSANCE</xsl:when>
          <xsl:when test="$req/cs:Event = 'DEATH'">DECES</xsl:when>
          <xsl:otherwise><xsl:message terminate="yes">unknown event <xsl:value-of select="$req/cs:Event"/></xsl:message></xsl:otherwise>
        </xsl:choose>
      </Evenement>
      <DateEvenement><xsl:value-of select="translate($req/cs:EventDate, '-', '')"/></DateEvenement>
      <LieuEvenement>
        <Pays><xsl:value-of select="$req/cs:EventPlace/cs:Country"/></Pays>
        <Ville><xsl:value-of select="$req/cs:EventPlace/cs:City"/></Ville>
      </LieuEvenement>
      <ActeEtranger>
        <Pays><xsl:value-of select="$req/cs:ForeignAct/cs:Country"/></Pays>
        <Autorite><xsl:value-of select="$req/cs:ForeignAct/cs:Authority"/></Autorite>
        <NumeroActe><xsl:value-of select="$req/cs:ForeignAct/cs:Number"/></NumeroActe>
        <DateActe><xsl:value-of select="translate($req/cs:ForeignAct/cs:Date, '-', '')"/></DateActe>
      </ActeEtranger>
      <Personne>
        <xsl:call-template name="names"><xsl:with-param name="who" select="$req/cs:Person"/></xsl:call-template>
        <Sexe><xsl:value-of select="$req/cs:Person/cs:Sex"/></Sexe>
        <DateNaissance><xsl:value-of select="translate($req/cs:Person/cs:BirthDate, '-', '')"/></DateNaissance>
      </Personne>
      <xsl:if test="$req/cs:Father">
        <Pere><xsl:call-template name="names"><xsl:with-param name="who" select="$req/cs:Father"/></xsl:call-template></Pere>
      </xsl:if>
      <xsl:if test="$req/cs:Mother">
        <Mere><xsl:call-template name="names"><xsl:with-param name="who" select="$req/cs:Mother"/></xsl:call-template></Mere>
      </xsl:if>
    </DemandeTranscription>
  </xsl:template>
</xsl:stylesheet>
