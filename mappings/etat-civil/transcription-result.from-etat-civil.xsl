<?xml version="1.0" encoding="UTF-8"?>
<!-- ETAT_CIVIL ResultatTranscription (callback) -> canonical TranscriptionResult:
     TRANSCRIT -> TRANSCRIBED with the Moroccan act; REJETE -> REJECTED with the reason code. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:ec="urn:ma:interieur:etat-civil:1"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:cs="urn:ma:gov:consular:civil-status:1"
    exclude-result-prefixes="ec">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template match="/ec:ResultatTranscription">
    <env:Message>
      <env:Header>
        <env:MessageId><xsl:value-of select="ec:IdentifiantMessage"/></env:MessageId>
        <env:CorrelationId><xsl:value-of select="ec:ReferenceDossier"/></env:CorrelationId>
        <env:InReplyTo><xsl:value-of select="ec:ReferenceDemande"/></env:InReplyTo>
        <env:Type>TranscriptionResult</env:Type>
        <env:Sender>ETAT_CIVIL</env:Sender>
        <env:Recipient>REGISTRY</env:Recipient>
        <env:Created><xsl:value-of select="ec:DateDecision"/></env:Created>
      </env:Header>
      <env:Body>
        <cs:TranscriptionResult>
          <cs:CaseReference><xsl:value-of select="ec:ReferenceDossier"/></cs:CaseReference>
          <cs:Decision>
            <xsl:choose>
              <xsl:when test="ec:Decision = 'TRANSCRIT'">TRANSCRIBED</xsl:when>
              <xsl:otherwise>REJECTED</xsl:otherwise>
            </xsl:choose>
          </cs:Decision>
          <cs:PartnerReference><xsl:value-of select="ec:ReferenceEtatCivil"/></cs:PartnerReference>
          <cs:DecidedAt><xsl:value-of select="ec:DateDecision"/></cs:DecidedAt>
          <xsl:choose>
            <xsl:when test="ec:Decision = 'TRANSCRIT'">
              <cs:MoroccanAct>
                <cs:Office><xsl:value-of select="ec:ActeMarocain/ec:Bureau"/></cs:Office>
                <cs:Year><xsl:value-of select="ec:ActeMarocain/ec:Annee"/></cs:Year>
                <cs:Number><xsl:value-of select="ec:ActeMarocain/ec:NumeroActe"/></cs:Number>
                <cs:Kind>
                  <xsl:choose>
                    <xsl:when test="ec:ActeMarocain/ec:Nature = 'NAISSANCE'">BIRTH</xsl:when>
                    <xsl:when test="ec:ActeMarocain/ec:Nature = 'MARIAGE'">MARRIAGE</xsl:when>
                    <xsl:otherwise>DEATH</xsl:otherwise>
                  </xsl:choose>
                </cs:Kind>
              </cs:MoroccanAct>
            </xsl:when>
            <xsl:otherwise>
              <cs:Reason><xsl:value-of select="ec:Motif/ec:Code"/></cs:Reason>
              <cs:ReasonText><xsl:value-of select="ec:Motif/ec:Libelle"/></cs:ReasonText>
            </xsl:otherwise>
          </xsl:choose>
        </cs:TranscriptionResult>
      </env:Body>
    </env:Message>
  </xsl:template>
</xsl:stylesheet>
