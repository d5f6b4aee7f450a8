<?xml version="1.0" encoding="UTF-8"?>
<!-- Canonical PassportHandover (the post handed the passport over) -> DGSN DeclarerRemisePasseport.
     Dates become JJ/MM/AAAA. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:pp="urn:ma:gov:consular:passport:1"
    xmlns="urn:ma:dgsn:services-consulaires:1"
    exclude-result-prefixes="env pp">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template name="date-jma">
    <xsl:param name="iso"/>
    <xsl:value-of select="concat(substring($iso, 9, 2), '/', substring($iso, 6, 2), '/', substring($iso, 1, 4))"/>
  </xsl:template>

  <xsl:template match="/env:Message">
    <xsl:variable name="h" select="env:Body/pp:PassportHandover"/>
    <DeclarerRemisePasseport>
      <IdentifiantMessage><xsl:value-of select="env:Header/env:MessageId"/></IdentifiantMessage>
      <ReferenceDossier><xsl:value-of select="env:Header/env:CorrelationId"/></ReferenceDossier>
      <ReferenceDgsn><xsl:value-of select="$h/pp:PartnerReference"/></ReferenceDgsn>
      <DateEmission><xsl:value-of select="env:Header/env:Created"/></DateEmission>
      <PosteConsulaire><xsl:value-of select="$h/pp:Post"/></PosteConsulaire>
      <NumeroPasseport><xsl:value-of select="$h/pp:PassportNumber"/></NumeroPasseport>
      <DateRemise>
        <xsl:call-template name="date-jma"><xsl:with-param name="iso" select="$h/pp:HandedOverOn"/></xsl:call-template>
      </DateRemise>
    </DeclarerRemisePasseport>
  </xsl:template>
</xsl:stylesheet>
