<?xml version="1.0" encoding="UTF-8"?>
<!-- DGSN ResultatVerificationIdentite (the synchronous answer to VerifierIdentite) -> canonical
     envelope with an IdentityCheckResult for the registry. MessageId is DGSN's own id for its answer;
     InReplyTo the hub's request (ReferenceDemande). -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:d="urn:ma:dgsn:services-consulaires:1"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:reg="urn:ma:gov:consular:registration:1"
    exclude-result-prefixes="d">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template match="/d:ResultatVerificationIdentite">
    <env:Message>
      <env:Header>
        <env:MessageId><xsl:value-of select="d:IdentifiantMessage"/></env:MessageId>
        <env:CorrelationId><xsl:value-of select="d:ReferenceDossier"/></env:CorrelationId>
        <env:InReplyTo><xsl:value-of select="d:ReferenceDemande"/></env:InReplyTo>
        <env:Type>IdentityCheckResult</env:Type>
        <env:Sender>DGSN</env:Sender>
        <env:Recipient>REGISTRY</env:Recipient>
        <env:Created><xsl:value-of select="d:DateVerification"/></env:Created>
      </env:Header>
      <env:Body>
        <reg:IdentityCheckResult>
          <reg:CaseReference><xsl:value-of select="d:ReferenceDossier"/></reg:CaseReference>
          <reg:Outcome>
            <xsl:choose>
              <xsl:when test="d:Resultat = 'CONCORDANCE'">MATCH</xsl:when>
              <xsl:when test="d:Resultat = 'DISCORDANCE'">MISMATCH</xsl:when>
              <xsl:otherwise>UNKNOWN</xsl:otherwise>
            </xsl:choose>
          </reg:Outcome>
          <reg:PartnerReference><xsl:value-of select="d:ReferenceDgsn"/></reg:PartnerReference>
          <reg:CheckedAt><xsl:value-of select="d:DateVerification"/></reg:CheckedAt>
          <xsl:for-each select="d:Ecart">
            <reg:Discrepancy field="{@champ}"><xsl:value-of select="."/></reg:Discrepancy>
          </xsl:for-each>
        </reg:IdentityCheckResult>
      </env:Body>
    </env:Message>
  </xsl:template>
</xsl:stylesheet>
