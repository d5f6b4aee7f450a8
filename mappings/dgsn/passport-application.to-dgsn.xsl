<?xml version="1.0" encoding="UTF-8"?>
<!-- Canonical PassportApplication -> DGSN DeposerDemandePasseport. No biometric data: only the
     reference of the enrolment at the post's capture station, from which DGSN fetches it. No
     address or contact details (minimisation). Dates become JJ/MM/AAAA. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:pp="urn:ma:gov:consular:passport:1"
    xmlns="urn:ma:dgsn:services-consulaires:1"
    exclude-result-prefixes="env pp">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template name="date-jma">
    <xsl:param name="iso"/>
    <xsl:value-of select="concat(substring($iso, 9, 2), '/', substring($iso, 6, 2), '/', substring($iso, 1, 4))"/>
  </xsl:template>

  <xsl:template match="/env:Message">
    <xsl:variable name="app" select="env:Body/pp:PassportApplication"/>
    <DeposerDemandePasseport>
      <IdentifiantMessage><xsl:value-of select="env:Header/env:MessageId"/></IdentifiantMessage>
      <ReferenceDossier><xsl:value-of select="env:Header/env:CorrelationId"/></ReferenceDossier>
      <DateEmission><xsl:value-of select="env:Header/env:Created"/></DateEmission>
      <PosteConsulaire><xsl:value-of select="$app/pp:Post"/></PosteConsulaire>
      <NatureDemande>
        <xsl:choose>
          <xsl:when test="$app/pp:Kind = 'FIRST'">PREMIERE_DEMANDE</xsl:when>
          <xsl:when test="$app/pp:Kind = 'RENEWAL'">RENOUVELLEMENT</xsl:when>
          <xsl:otherwise>REMPLACEMENT</xsl:otherwise>
        </xsl:choose>
      </NatureDemande>
      <Demandeur>
        <xsl:if test="$app/pp:Applicant/pp:Cnie">
          <CNIE><xsl:value-of select="$app/pp:Applicant/pp:Cnie"/></CNIE>
        </xsl:if>
        <Nom><xsl:value-of select="$app/pp:Applicant/pp:LatinName/pp:Family"/></Nom>
        <Prenom><xsl:value-of select="$app/pp:Applicant/pp:LatinName/pp:Given"/></Prenom>
        <NomArabe><xsl:value-of select="$app/pp:Applicant/pp:ArabicName/pp:Family"/></NomArabe>
        <PrenomArabe><xsl:value-of select="$app/pp:Applicant/pp:ArabicName/pp:Given"/></PrenomArabe>
        <DateNaissance>
          <xsl:call-template name="date-jma"><xsl:with-param name="iso" select="$app/pp:Applicant/pp:BirthDate"/></xsl:call-template>
        </DateNaissance>
        <Sexe><xsl:value-of select="$app/pp:Sex"/></Sexe>
        <xsl:if test="$app/pp:BirthPlace">
          <LieuNaissance><xsl:value-of select="$app/pp:BirthPlace"/></LieuNaissance>
        </xsl:if>
      </Demandeur>
      <xsl:if test="$app/pp:PreviousPassport">
        <AncienPasseport><xsl:value-of select="$app/pp:PreviousPassport"/></AncienPasseport>
      </xsl:if>
      <ReferenceEnrolementBiometrique><xsl:value-of select="$app/pp:BiometricEnrolment/pp:Reference"/></ReferenceEnrolementBiometrique>
      <PosteRetrait><xsl:value-of select="$app/pp:CollectionPost"/></PosteRetrait>
    </DeposerDemandePasseport>
  </xsl:template>
</xsl:stylesheet>
