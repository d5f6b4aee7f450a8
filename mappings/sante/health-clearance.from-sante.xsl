<?xml version="1.0" encoding="UTF-8"?>
<!-- SANTE AvisSanitaire (the synchronous answer to a DemandeAutorisationSanitaire) -> canonical
     RepatriationClearance with Authority SANTE: FAVORABLE -> GRANTED, DEFAVORABLE -> REFUSED. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:s="urn:ma:sante:autorisation-sanitaire:1"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:rep="urn:ma:gov:consular:repatriation:1"
    exclude-result-prefixes="s">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template match="/s:AvisSanitaire">
    <env:Message>
      <env:Header>
        <env:MessageId><xsl:value-of select="s:IdentifiantMessage"/></env:MessageId>
        <env:CorrelationId><xsl:value-of select="s:ReferenceDossier"/></env:CorrelationId>
        <env:InReplyTo><xsl:value-of select="s:ReferenceDemande"/></env:InReplyTo>
        <env:Type>RepatriationClearance</env:Type>
        <env:Sender>SANTE</env:Sender>
        <env:Recipient>REGISTRY</env:Recipient>
        <env:Created><xsl:value-of select="s:DateAvis"/></env:Created>
      </env:Header>
      <env:Body>
        <rep:RepatriationClearance>
          <rep:CaseReference><xsl:value-of select="s:ReferenceDossier"/></rep:CaseReference>
          <rep:Authority>SANTE</rep:Authority>
          <rep:Decision>
            <xsl:choose>
              <xsl:when test="s:Avis = 'FAVORABLE'">GRANTED</xsl:when>
              <xsl:otherwise>REFUSED</xsl:otherwise>
            </xsl:choose>
          </rep:Decision>
          <xsl:if test="s:Motif">
            <rep:Reason><xsl:value-of select="s:Motif/s:Code"/></rep:Reason>
            <rep:ReasonText><xsl:value-of select="s:Motif/s:Libelle"/></rep:ReasonText>
          </xsl:if>
          <rep:PartnerReference><xsl:value-of select="s:NumeroAvis"/></rep:PartnerReference>
          <rep:DecidedAt><xsl:value-of select="s:DateAvis"/></rep:DecidedAt>
        </rep:RepatriationClearance>
      </env:Body>
    </env:Message>
  </xsl:template>
</xsl:stylesheet>
