<?xml version="1.0" encoding="UTF-8"?>
<!-- CDG AccuseLot -> canonical envelope with a LifeCertificateBatchAcknowledgement for the registry.
     MessageId = CDG's IdentifiantAccuse, CorrelationId = the batch reference (IdentifiantLot),
     InReplyTo = the hub's batch message id echoed by CDG (ReferenceMessage). The AccuseLot itself is
     copied unchanged into PartnerAcknowledgement, so CDG's signature still verifies. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:c="urn:ma:cdg:certificats-vie:1"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:pen="urn:ma:gov:consular:pension:1"
    exclude-result-prefixes="c">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template match="/c:AccuseLot">
    <env:Message>
      <env:Header>
        <env:MessageId><xsl:value-of select="c:IdentifiantAccuse"/></env:MessageId>
        <env:CorrelationId><xsl:value-of select="c:IdentifiantLot"/></env:CorrelationId>
        <env:InReplyTo><xsl:value-of select="c:ReferenceMessage"/></env:InReplyTo>
        <env:Type>LifeCertificateBatchAcknowledgement</env:Type>
        <env:Sender>CDG</env:Sender>
        <env:Recipient>REGISTRY</env:Recipient>
        <env:Created><xsl:value-of select="c:DateTraitement"/></env:Created>
      </env:Header>
      <env:Body>
        <pen:LifeCertificateBatchAcknowledgement>
          <pen:BatchReference><xsl:value-of select="c:IdentifiantLot"/></pen:BatchReference>
          <pen:PartnerReference><xsl:value-of select="c:IdentifiantAccuse"/></pen:PartnerReference>
          <pen:ProcessedAt><xsl:value-of select="c:DateTraitement"/></pen:ProcessedAt>
          <pen:Accepted><xsl:value-of select="c:NombreAcceptes"/></pen:Accepted>
          <pen:Rejected><xsl:value-of select="c:NombreRejetes"/></pen:Rejected>
          <xsl:for-each select="c:Ligne">
            <pen:Item>
              <pen:CaseReference><xsl:value-of select="c:Reference"/></pen:CaseReference>
              <pen:Kind>
                <xsl:choose>
                  <xsl:when test="c:Type = 'AVIS_DECES'">DEATH_NOTICE</xsl:when>
                  <xsl:otherwise>LIFE_CERTIFICATE</xsl:otherwise>
                </xsl:choose>
              </pen:Kind>
              <pen:Result>
                <xsl:choose>
                  <xsl:when test="c:Statut = 'ACCEPTE'">ACCEPTED</xsl:when>
                  <xsl:otherwise>REJECTED</xsl:otherwise>
                </xsl:choose>
              </pen:Result>
              <xsl:if test="c:CodeMotif">
                <pen:Reason><xsl:value-of select="c:CodeMotif"/></pen:Reason>
              </xsl:if>
              <xsl:if test="c:LibelleMotif">
                <pen:ReasonText><xsl:value-of select="c:LibelleMotif"/></pen:ReasonText>
              </xsl:if>
            </pen:Item>
          </xsl:for-each>
          <pen:PartnerAcknowledgement><xsl:copy-of select="."/></pen:PartnerAcknowledgement>
        </pen:LifeCertificateBatchAcknowledgement>
      </env:Body>
    </env:Message>
  </xsl:template>
</xsl:stylesheet>
