<?xml version="1.0" encoding="UTF-8"?>
<!-- ETAT_CIVIL AccuseReceptionTranscription (the synchronous answer to a DemandeTranscription)
     -> canonical TranscriptionAcknowledged: the register's file reference for the case. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:ec="urn:ma:interieur:etat-civil:1"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:cs="urn:ma:gov:consular:civil-status:1"
    exclude-result-prefixes="ec">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template match="/ec:AccuseReceptionTranscription">
    <env:Message>
      <env:Header>
        <env:MessageId><xsl:value-of select="ec:IdentifiantMessage"/></env:MessageId>
        <env:CorrelationId><xsl:value-of select="ec:ReferenceDossier"/></env:CorrelationId>
        <env:InReplyTo><xsl:value-of select="ec:ReferenceDemande"/></env:InReplyTo>
        <env:Type>TranscriptionAcknowledged</env:Type>
        <env:Sender>ETAT_CIVIL</env:Sender>
        <env:Recipient>REGISTRY</env:Recipient>
        <env:Created><xsl:value-of select="ec:DateReception"/></env:Created>
      </env:Header>
      <env:Body>
        <cs:TranscriptionAcknowledged>
          <cs:CaseReference><xsl:value-of select="ec:ReferenceDossier"/></cs:CaseReference>
          <cs:PartnerReference><xsl:value-of select="ec:ReferenceEtatCivil"/></cs:PartnerReference>
          <cs:ReceivedAt><xsl:value-of select="ec:DateReception"/></cs:ReceivedAt>
        </cs:TranscriptionAcknowledged>
      </env:Body>
    </env:Message>
  </xsl:template>
</xsl:stylesheet>
