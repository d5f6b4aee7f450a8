<?xml version="1.0" encoding="UTF-8"?>
<!-- DGSN DecisionPassageFrontiere (synchronous answer) -> canonical RepatriationClearance with
     Authority DGSN: AUTORISE -> GRANTED, REFUSE -> REFUSED with DGSN's reason code (e.g.
     SCELLE_NON_CONFORME) and text. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:d="urn:ma:dgsn:services-consulaires:1"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:rep="urn:ma:gov:consular:repatriation:1"
    exclude-result-prefixes="d">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template match="/d:DecisionPassageFrontiere">
    <env:Message>
      <env:Header>
        <env:MessageId><xsl:value-of select="d:IdentifiantMessage"/></env:MessageId>
        <env:CorrelationId><xsl:value-of select="d:ReferenceDossier"/></env:CorrelationId>
        <env:InReplyTo><xsl:value-of select="d:ReferenceDemande"/></env:InReplyTo>
        <env:Type>RepatriationClearance</env:Type>
        <env:Sender>DGSN</env:Sender>
        <env:Recipient>REGISTRY</env:Recipient>
        <env:Created><xsl:value-of select="d:DateDecision"/></env:Created>
      </env:Header>
      <env:Body>
        <rep:RepatriationClearance>
          <rep:CaseReference><xsl:value-of select="d:ReferenceDossier"/></rep:CaseReference>
          <rep:Authority>DGSN</rep:Authority>
          <rep:Decision>
            <xsl:choose>
              <xsl:when test="d:Decision = 'AUTORISE'">GRANTED</xsl:when>
              <xsl:otherwise>REFUSED</xsl:otherwise>
            </xsl:choose>
          </rep:Decision>
          <xsl:if test="d:Motif">
            <rep:Reason><xsl:value-of select="d:Motif"/></rep:Reason>
          </xsl:if>
          <xsl:if test="d:LibelleMotif">
            <rep:ReasonText><xsl:value-of select="d:LibelleMotif"/></rep:ReasonText>
          </xsl:if>
          <rep:PartnerReference><xsl:value-of select="d:ReferenceDgsn"/></rep:PartnerReference>
          <rep:DecidedAt><xsl:value-of select="d:DateDecision"/></rep:DecidedAt>
        </rep:RepatriationClearance>
      </env:Body>
    </env:Message>
  </xsl:template>
</xsl:stylesheet>
