<?xml version="1.0" encoding="UTF-8"?>
<!-- ETAT_CIVIL's synchronous answer to a DemandeExtrait -> canonical CivilStatusExtract for the registry:
       Extrait          -> Outcome ISSUED, the signed Extrait copied unchanged (its signature still verifies)
       ActeIntrouvable  -> Outcome NOT_FOUND with the register's reason -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:ec="urn:ma:interieur:etat-civil:1"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:cs="urn:ma:gov:consular:civil-status:1"
    exclude-result-prefixes="ec">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template name="header">
    <xsl:param name="created"/>
    <env:Header>
      <env:MessageId><xsl:value-of select="ec:IdentifiantMessage"/></env:MessageId>
      <env:CorrelationId><xsl:value-of select="ec:ReferenceDossier"/></env:CorrelationId>
      <env:InReplyTo><xsl:value-of select="ec:ReferenceDemande"/></env:InReplyTo>
      <env:Type>CivilStatusExtract</env:Type>
      <env:Sender>ETAT_CIVIL</env:Sender>
      <env:Recipient>REGISTRY</env:Recipient>
      <env:Created><xsl:value-of select="$created"/></env:Created>
    </env:Header>
  </xsl:template>

  <xsl:template match="/ec:Extrait">
    <env:Message>
      <xsl:call-template name="header"><xsl:with-param name="created" select="ec:DateDelivrance"/></xsl:call-template>
      <env:Body>
        <cs:CivilStatusExtract>
          <cs:CaseReference><xsl:value-of select="ec:ReferenceDossier"/></cs:CaseReference>
          <cs:Outcome>ISSUED</cs:Outcome>
          <cs:PartnerReference><xsl:value-of select="ec:NumeroExtrait"/></cs:PartnerReference>
          <cs:DecidedAt><xsl:value-of select="ec:DateDelivrance"/></cs:DecidedAt>
          <cs:Extract><xsl:copy-of select="."/></cs:Extract>
        </cs:CivilStatusExtract>
      </env:Body>
    </env:Message>
  </xsl:template>

  <xsl:template match="/ec:ActeIntrouvable">
    <env:Message>
      <xsl:call-template name="header"><xsl:with-param name="created" select="ec:DateReponse"/></xsl:call-template>
      <env:Body>
        <cs:CivilStatusExtract>
          <cs:CaseReference><xsl:value-of select="ec:ReferenceDossier"/></cs:CaseReference>
          <cs:Outcome>NOT_FOUND</cs:Outcome>
          <cs:PartnerReference><xsl:value-of select="ec:IdentifiantMessage"/></cs:PartnerReference>
          <cs:DecidedAt><xsl:value-of select="ec:DateReponse"/></cs:DecidedAt>
          <cs:Reason><xsl:value-of select="ec:Motif/ec:Code"/></cs:Reason>
          <cs:ReasonText><xsl:value-of select="ec:Motif/ec:Libelle"/></cs:ReasonText>
        </cs:CivilStatusExtract>
      </env:Body>
    </env:Message>
  </xsl:template>
</xsl:stylesheet>
