<?xml version="1.0" encoding="UTF-8"?>
<!-- Canonical ConsularRegistrationRequest of Kind UPDATE with an AddressChange -> DGSN
     NotifierChangementAdresse (the route sends it only then, by `when`). The CNIE address is the
     legal address for judicial notifications, so DGSN gets the identity and the new address abroad,
     nothing else. Dates become JJ/MM/AAAA. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:reg="urn:ma:gov:consular:registration:1"
    xmlns="urn:ma:dgsn:services-consulaires:1"
    exclude-result-prefixes="env reg">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template name="date-jma">
    <xsl:param name="iso"/>
    <xsl:value-of select="concat(substring($iso, 9, 2), '/', substring($iso, 6, 2), '/', substring($iso, 1, 4))"/>
  </xsl:template>

  <xsl:template match="/env:Message">
    <xsl:variable name="req" select="env:Body/reg:ConsularRegistrationRequest"/>
    <xsl:if test="not($req/reg:AddressChange)">
      <xsl:message terminate="yes">the registration request carries no AddressChange</xsl:message>
    </xsl:if>
    <NotifierChangementAdresse>
      <IdentifiantMessage><xsl:value-of select="env:Header/env:MessageId"/></IdentifiantMessage>
      <ReferenceDossier><xsl:value-of select="env:Header/env:CorrelationId"/></ReferenceDossier>
      <DateEmission><xsl:value-of select="env:Header/env:Created"/></DateEmission>
      <PosteConsulaire><xsl:value-of select="$req/reg:Post"/></PosteConsulaire>
      <Personne>
        <xsl:if test="$req/reg:Person/reg:Cnie">
          <CNIE><xsl:value-of select="$req/reg:Person/reg:Cnie"/></CNIE>
        </xsl:if>
        <Nom><xsl:value-of select="$req/reg:Person/reg:LatinName/reg:Family"/></Nom>
        <Prenom><xsl:value-of select="$req/reg:Person/reg:LatinName/reg:Given"/></Prenom>
        <NomArabe><xsl:value-of select="$req/reg:Person/reg:ArabicName/reg:Family"/></NomArabe>
        <PrenomArabe><xsl:value-of select="$req/reg:Person/reg:ArabicName/reg:Given"/></PrenomArabe>
        <DateNaissance>
          <xsl:call-template name="date-jma"><xsl:with-param name="iso" select="$req/reg:Person/reg:BirthDate"/></xsl:call-template>
        </DateNaissance>
      </Personne>
      <NouvelleAdresse>
        <Pays><xsl:value-of select="$req/reg:AddressAbroad/reg:Country"/></Pays>
        <Ville><xsl:value-of select="$req/reg:AddressAbroad/reg:City"/></Ville>
        <xsl:for-each select="$req/reg:AddressAbroad/reg:Line">
          <Ligne><xsl:value-of select="."/></Ligne>
        </xsl:for-each>
        <xsl:if test="$req/reg:AddressAbroad/reg:PostalCode">
          <CodePostal><xsl:value-of select="$req/reg:AddressAbroad/reg:PostalCode"/></CodePostal>
        </xsl:if>
      </NouvelleAdresse>
      <DateEffet>
        <xsl:call-template name="date-jma"><xsl:with-param name="iso" select="$req/reg:AddressChange/reg:EffectiveDate"/></xsl:call-template>
      </DateEffet>
    </NotifierChangementAdresse>
  </xsl:template>
</xsl:stylesheet>
