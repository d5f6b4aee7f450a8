<?xml version="1.0" encoding="UTF-8"?>
<!-- DGSN RecepisseDepotPasseport (the synchronous answer to DeposerDemandePasseport) -> canonical
     PassportApplicationAcknowledged carrying DGSN's reference for the application. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:d="urn:ma:dgsn:services-consulaires:1"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:pp="urn:ma:gov:consular:passport:1"
    exclude-result-prefixes="d">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template match="/d:RecepisseDepotPasseport">
    <env:Message>
      <env:Header>
        <env:MessageId><xsl:value-of select="d:IdentifiantMessage"/></env:MessageId>
        <env:CorrelationId><xsl:value-of select="d:ReferenceDossier"/></env:CorrelationId>
        <env:InReplyTo><xsl:value-of select="d:ReferenceDemande"/></env:InReplyTo>
        <env:Type>PassportApplicationAcknowledged</env:Type>
        <env:Sender>DGSN</env:Sender>
        <env:Recipient>REGISTRY</env:Recipient>
        <env:Created><xsl:value-of select="d:DateReception"/></env:Created>
      </env:Header>
      <env:Body>
        <pp:PassportApplicationAcknowledged>
          <pp:CaseReference><xsl:value-of select="d:ReferenceDossier"/></pp:CaseReference>
          <pp:PartnerReference><xsl:value-of select="d:ReferenceDgsn"/></pp:PartnerReference>
          <pp:ReceivedAt><xsl:value-of select="d:DateReception"/></pp:ReceivedAt>
        </pp:PassportApplicationAcknowledged>
      </env:Body>
    </env:Message>
  </xsl:template>
</xsl:stylesheet>
