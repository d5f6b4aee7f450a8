<?xml version="1.0" encoding="UTF-8"?>
<!-- NARSA ResultatAuthentification -> canonical envelope with a LicenceAuthenticationResult for the
     registry. NARSA's signed Attestation is copied unchanged, so its signature still verifies. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:n="urn:ma:narsa:authentification-permis:1"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:lic="urn:ma:gov:consular:licence:1"
    exclude-result-prefixes="n">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template match="/n:ResultatAuthentification">
    <env:Message>
      <env:Header>
        <env:MessageId><xsl:value-of select="n:IdentifiantMessage"/></env:MessageId>
        <env:CorrelationId><xsl:value-of select="n:ReferenceDossier"/></env:CorrelationId>
        <env:InReplyTo><xsl:value-of select="n:ReferenceDemande"/></env:InReplyTo>
        <env:Type>LicenceAuthenticationResult</env:Type>
        <env:Sender>NARSA</env:Sender>
        <env:Recipient>REGISTRY</env:Recipient>
        <env:Created><xsl:value-of select="n:DateDecision"/></env:Created>
      </env:Header>
      <env:Body>
        <lic:LicenceAuthenticationResult>
          <lic:CaseReference><xsl:value-of select="n:ReferenceDossier"/></lic:CaseReference>
          <lic:Verdict>
            <xsl:choose>
              <xsl:when test="n:Verdict = 'AUTHENTIQUE'">AUTHENTIC</xsl:when>
              <xsl:when test="n:Verdict = 'NON_AUTHENTIQUE'">NOT_AUTHENTIC</xsl:when>
              <xsl:otherwise>DISCREPANCY</xsl:otherwise>
            </xsl:choose>
          </lic:Verdict>
          <lic:PartnerReference><xsl:value-of select="n:ReferenceNarsa"/></lic:PartnerReference>
          <lic:DecidedAt><xsl:value-of select="n:DateDecision"/></lic:DecidedAt>
          <xsl:for-each select="n:Divergence">
            <lic:Discrepancy field="{@champ}"><xsl:value-of select="."/></lic:Discrepancy>
          </xsl:for-each>
          <xsl:if test="n:Attestation">
            <lic:Attestation><xsl:copy-of select="n:Attestation"/></lic:Attestation>
          </xsl:if>
        </lic:LicenceAuthenticationResult>
      </env:Body>
    </env:Message>
  </xsl:template>
</xsl:stylesheet>
