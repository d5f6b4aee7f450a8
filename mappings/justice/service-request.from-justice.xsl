<?xml version="1.0" encoding="UTF-8"?>
<!-- Justice DemandeSignification -> canonical envelope with a JudicialServiceRequest for the registry.
     Justice starts this exchange: the envelope answers nothing (no InReplyTo), its MessageId is Justice's
     IdentifiantMessage and its CorrelationId Justice's own reference (ReferenceMJ). The judicial act is
     copied opaque (encrypted content or blob reference), never read. Justice's signature is not copied:
     the hub verified it at intake and keeps the bytes as received; the registry gets the hub's. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:j="urn:ma:justice:plis-judiciaires:1"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:jud="urn:ma:gov:consular:judicial:1"
    exclude-result-prefixes="j">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template name="date-iso">
    <xsl:param name="jma"/>
    <xsl:value-of select="concat(substring($jma, 7, 4), '-', substring($jma, 4, 2), '-', substring($jma, 1, 2))"/>
  </xsl:template>

  <xsl:template match="/j:DemandeSignification">
    <env:Message>
      <env:Header>
        <env:MessageId><xsl:value-of select="j:IdentifiantMessage"/></env:MessageId>
        <env:CorrelationId><xsl:value-of select="j:ReferenceMJ"/></env:CorrelationId>
        <env:Type>JudicialServiceRequest</env:Type>
        <env:Sender>JUSTICE</env:Sender>
        <env:Recipient>REGISTRY</env:Recipient>
        <env:Created><xsl:value-of select="j:DateEmission"/></env:Created>
      </env:Header>
      <env:Body>
        <jud:JudicialServiceRequest>
          <jud:JusticeReference><xsl:value-of select="j:ReferenceMJ"/></jud:JusticeReference>
          <jud:Court>
            <jud:Code><xsl:value-of select="j:Juridiction/j:Code"/></jud:Code>
            <jud:Name><xsl:value-of select="j:Juridiction/j:Nom"/></jud:Name>
          </jud:Court>
          <jud:CaseNumber><xsl:value-of select="j:NumeroDossier"/></jud:CaseNumber>
          <jud:DocumentType>
            <xsl:choose>
              <xsl:when test="j:TypeActe = 'CONVOCATION'">SUMMONS</xsl:when>
              <xsl:when test="j:TypeActe = 'ASSIGNATION'">WRIT</xsl:when>
              <xsl:when test="j:TypeActe = 'JUGEMENT'">JUDGMENT</xsl:when>
              <xsl:when test="j:TypeActe = 'ARRET'">APPEAL_JUDGMENT</xsl:when>
              <xsl:when test="j:TypeActe = 'ORDONNANCE'">ORDER</xsl:when>
              <xsl:when test="j:TypeActe = 'NOTIFICATION'">NOTICE</xsl:when>
              <xsl:otherwise><xsl:message terminate="yes">unknown TypeActe</xsl:message></xsl:otherwise>
            </xsl:choose>
          </jud:DocumentType>
          <xsl:if test="j:DateAudience">
            <jud:HearingDate>
              <xsl:call-template name="date-iso"><xsl:with-param name="jma" select="j:DateAudience"/></xsl:call-template>
            </jud:HearingDate>
          </xsl:if>
          <jud:IssuedAt><xsl:value-of select="j:DateEmission"/></jud:IssuedAt>
          <jud:Addressee>
            <jud:Cnie><xsl:value-of select="j:Destinataire/j:CNIE"/></jud:Cnie>
            <jud:Name><xsl:value-of select="j:Destinataire/j:NomComplet"/></jud:Name>
          </jud:Addressee>
          <jud:Document>
            <xsl:for-each select="j:Acte/j:ContenuChiffre">
              <jud:EncryptedContent mediaType="{@typeMime}" encryption="{@chiffrement}"><xsl:value-of select="."/></jud:EncryptedContent>
            </xsl:for-each>
            <xsl:for-each select="j:Acte/j:ReferenceChiffree">
              <jud:EncryptedReference>
                <jud:Uri><xsl:value-of select="j:Uri"/></jud:Uri>
                <jud:Sha256><xsl:value-of select="j:EmpreinteSHA256"/></jud:Sha256>
              </jud:EncryptedReference>
            </xsl:for-each>
          </jud:Document>
        </jud:JudicialServiceRequest>
      </env:Body>
    </env:Message>
  </xsl:template>
</xsl:stylesheet>
