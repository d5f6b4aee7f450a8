<?xml version="1.0" encoding="UTF-8"?>
<!-- ETAT_CIVIL DecisionInhumation (the synchronous answer to an AvisInhumation) -> canonical
     RepatriationClearance with Authority ETAT_CIVIL: ACCORDEE -> GRANTED, REFUSEE -> REFUSED. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:ec="urn:ma:interieur:etat-civil:1"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:rep="urn:ma:gov:consular:repatriation:1"
    exclude-result-prefixes="ec">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template match="/ec:DecisionInhumation">
    <env:Message>
      <env:Header>
        <env:MessageId><xsl:value-of select="ec:IdentifiantMessage"/></env:MessageId>
        <env:CorrelationId><xsl:value-of select="ec:ReferenceDossier"/></env:CorrelationId>
        <env:InReplyTo><xsl:value-of select="ec:ReferenceDemande"/></env:InReplyTo>
        <env:Type>RepatriationClearance</env:Type>
        <env:Sender>ETAT_CIVIL</env:Sender>
        <env:Recipient>REGISTRY</env:Recipient>
        <env:Created><xsl:value-of select="ec:DateDecision"/></env:Created>
      </env:Header>
      <env:Body>
        <rep:RepatriationClearance>
          <rep:CaseReference><xsl:value-of select="ec:ReferenceDossier"/></rep:CaseReference>
          <rep:Authority>ETAT_CIVIL</rep:Authority>
          <rep:Decision>
            <xsl:choose>
              <xsl:when test="ec:Decision = 'ACCORDEE'">GRANTED</xsl:when>
              <xsl:otherwise>REFUSED</xsl:otherwise>
            </xsl:choose>
          </rep:Decision>
          <xsl:if test="ec:Motif">
            <rep:Reason><xsl:value-of select="ec:Motif/ec:Code"/></rep:Reason>
            <rep:ReasonText><xsl:value-of select="ec:Motif/ec:Libelle"/></rep:ReasonText>
          </xsl:if>
          <rep:PartnerReference><xsl:value-of select="ec:ReferenceEtatCivil"/></rep:PartnerReference>
          <rep:DecidedAt><xsl:value-of select="ec:DateDecision"/></rep:DecidedAt>
        </rep:RepatriationClearance>
      </env:Body>
    </env:Message>
  </xsl:template>
</xsl:stylesheet>
