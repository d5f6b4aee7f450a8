<?xml version="1.0" encoding="UTF-8"?>
<!-- DGSN NotificationStatutPasseport (a callback to the hub's /soap/DGSN) -> canonical
     PassportStatusUpdate. InReplyTo is the hub's PassportApplication message (ReferenceDemande);
     JJ/MM/AAAA dates become ISO dates. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:d="urn:ma:dgsn:services-consulaires:1"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:pp="urn:ma:gov:consular:passport:1"
    exclude-result-prefixes="d">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template name="date-iso">
    <xsl:param name="jma"/>
    <xsl:value-of select="concat(substring($jma, 7, 4), '-', substring($jma, 4, 2), '-', substring($jma, 1, 2))"/>
  </xsl:template>

  <xsl:template match="/d:NotificationStatutPasseport">
    <env:Message>
      <env:Header>
        <env:MessageId><xsl:value-of select="d:IdentifiantMessage"/></env:MessageId>
        <env:CorrelationId><xsl:value-of select="d:ReferenceDossier"/></env:CorrelationId>
        <env:InReplyTo><xsl:value-of select="d:ReferenceDemande"/></env:InReplyTo>
        <env:Type>PassportStatusUpdate</env:Type>
        <env:Sender>DGSN</env:Sender>
        <env:Recipient>REGISTRY</env:Recipient>
        <env:Created><xsl:value-of select="d:DateStatut"/></env:Created>
      </env:Header>
      <env:Body>
        <pp:PassportStatusUpdate>
          <pp:CaseReference><xsl:value-of select="d:ReferenceDossier"/></pp:CaseReference>
          <pp:PartnerReference><xsl:value-of select="d:ReferenceDgsn"/></pp:PartnerReference>
          <pp:Status>
            <xsl:choose>
              <xsl:when test="d:Statut = 'EN_FABRICATION'">IN_PRODUCTION</xsl:when>
              <xsl:when test="d:Statut = 'EXPEDIE'">SHIPPED</xsl:when>
              <xsl:when test="d:Statut = 'DISPONIBLE_AU_POSTE'">AVAILABLE_AT_POST</xsl:when>
              <xsl:when test="d:Statut = 'REJETE'">REJECTED</xsl:when>
              <xsl:otherwise><xsl:message terminate="yes">unknown DGSN status</xsl:message></xsl:otherwise>
            </xsl:choose>
          </pp:Status>
          <pp:ChangedAt><xsl:value-of select="d:DateStatut"/></pp:ChangedAt>
          <xsl:if test="d:NumeroPasseport">
            <pp:PassportNumber><xsl:value-of select="d:NumeroPasseport"/></pp:PassportNumber>
          </xsl:if>
          <xsl:if test="d:DateExpiration">
            <pp:ExpiryDate>
              <xsl:call-template name="date-iso"><xsl:with-param name="jma" select="d:DateExpiration"/></xsl:call-template>
            </pp:ExpiryDate>
          </xsl:if>
          <xsl:if test="d:NumeroExpedition">
            <pp:ShipmentReference><xsl:value-of select="d:NumeroExpedition"/></pp:ShipmentReference>
          </xsl:if>
          <xsl:if test="d:Motif">
            <pp:Reason><xsl:value-of select="d:Motif"/></pp:Reason>
          </xsl:if>
          <xsl:if test="d:LibelleMotif">
            <pp:ReasonText><xsl:value-of select="d:LibelleMotif"/></pp:ReasonText>
          </xsl:if>
        </pp:PassportStatusUpdate>
      </env:Body>
    </env:Message>
  </xsl:template>
</xsl:stylesheet>
