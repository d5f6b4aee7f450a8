<?xml version="1.0" encoding="UTF-8"?>
<!-- Canonical JudicialDeliveryCertificate (in its envelope) -> Justice AttestationRemise.
     IdentifiantMessage is the hub's MessageId (Justice deduplicates on it); ReferenceDemande is the
     MessageId of the request it answers (Justice's own IdentifiantMessage, from InReplyTo). Only the
     outcome travels (law 09-08, minimisation): no CNIE, no address. Dates become JJ/MM/AAAA. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:jud="urn:ma:gov:consular:judicial:1"
    xmlns="urn:ma:justice:plis-judiciaires:1"
    exclude-result-prefixes="env jud">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template name="date-jma">
    <xsl:param name="iso"/>
    <xsl:value-of select="concat(substring($iso, 9, 2), '/', substring($iso, 6, 2), '/', substring($iso, 1, 4))"/>
  </xsl:template>

  <xsl:template match="/env:Message">
    <xsl:variable name="c" select="env:Body/jud:JudicialDeliveryCertificate"/>
    <AttestationRemise>
      <IdentifiantMessage><xsl:value-of select="env:Header/env:MessageId"/></IdentifiantMessage>
      <ReferenceDemande><xsl:value-of select="env:Header/env:InReplyTo"/></ReferenceDemande>
      <ReferenceMJ><xsl:value-of select="$c/jud:JusticeReference"/></ReferenceMJ>
      <ReferenceConsulaire><xsl:value-of select="$c/jud:CaseReference"/></ReferenceConsulaire>
      <Resultat>
        <xsl:choose>
          <xsl:when test="$c/jud:Outcome = 'SERVED'">REMIS</xsl:when>
          <xsl:when test="$c/jud:Outcome = 'REFUSED'">REFUS</xsl:when>
          <xsl:when test="$c/jud:Outcome = 'NOT_FOUND'">INTROUVABLE</xsl:when>
          <xsl:when test="$c/jud:Outcome = 'ADDRESSEE_UNKNOWN'">DESTINATAIRE_INCONNU</xsl:when>
          <xsl:otherwise><xsl:message terminate="yes">unknown Outcome</xsl:message></xsl:otherwise>
        </xsl:choose>
      </Resultat>
      <DateResultat>
        <xsl:call-template name="date-jma"><xsl:with-param name="iso" select="$c/jud:OutcomeDate"/></xsl:call-template>
      </DateResultat>
      <xsl:if test="$c/jud:DeemedServedOn">
        <DateSignificationReputee>
          <xsl:call-template name="date-jma"><xsl:with-param name="iso" select="$c/jud:DeemedServedOn"/></xsl:call-template>
        </DateSignificationReputee>
      </xsl:if>
      <xsl:if test="$c/jud:Post">
        <PosteConsulaire><xsl:value-of select="$c/jud:Post"/></PosteConsulaire>
      </xsl:if>
      <xsl:if test="$c/jud:Note">
        <Observations><xsl:value-of select="$c/jud:Note"/></Observations>
      </xsl:if>
      <DateEmission><xsl:value-of select="env:Header/env:Created"/></DateEmission>
    </AttestationRemise>
  </xsl:template>
</xsl:stylesheet>
