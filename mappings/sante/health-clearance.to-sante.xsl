<?xml version="1.0" encoding="UTF-8"?>
<!-- Canonical RepatriationRequest (in its envelope) -> SANTE DemandeAutorisationSanitaire.
     SANTE is the only partner that receives the cause of death (health data, law 09-08). The
     commune of burial and identity numbers are not sent. Dates become JJ-MM-AAAA. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:env="urn:ma:gov:consular:hub:envelope:1"
    xmlns:rep="urn:ma:gov:consular:repatriation:1"
    xmlns="urn:ma:sante:autorisation-sanitaire:1"
    exclude-result-prefixes="env rep">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:template name="jma">
    <xsl:param name="iso"/>
    <xsl:value-of select="concat(substring($iso, 9, 2), '-', substring($iso, 6, 2), '-', substring($iso, 1, 4))"/>
  </xsl:template>

  <xsl:template match="/env:Message">
    <xsl:variable name="req" select="env:Body/rep:RepatriationRequest"/>
    <xsl:variable name="who" select="$req/rep:Deceased"/>
    <DemandeAutorisationSanitaire>
      <IdentifiantMessage><xsl:value-of select="env:Header/env:MessageId"/></IdentifiantMessage>
      <ReferenceDossier><xsl:value-of select="env:Header/env:CorrelationId"/></ReferenceDossier>
      <DateEmission><xsl:value-of select="env:Header/env:Created"/></DateEmission>
      <PosteConsulaire><xsl:value-of select="$req/rep:Post"/></PosteConsulaire>
      <Defunt>
        <Nom><xsl:value-of select="$who/rep:LatinName/rep:Family"/></Nom>
        <Prenom><xsl:value-of select="$who/rep:LatinName/rep:Given"/></Prenom>
        <NomArabe><xsl:value-of select="$who/rep:ArabicName/rep:Family"/></NomArabe>
        <PrenomArabe><xsl:value-of select="$who/rep:ArabicName/rep:Given"/></PrenomArabe>
        <Sexe><xsl:value-of select="$who/rep:Sex"/></Sexe>
        <DateNaissance>
          <xsl:call-template name="jma"><xsl:with-param name="iso" select="$who/rep:BirthDate"/></xsl:call-template>
        </DateNaissance>
      </Defunt>
      <Deces>
        <Date><xsl:call-template name="jma"><xsl:with-param name="iso" select="$req/rep:Death/rep:Date"/></xsl:call-template></Date>
        <Pays><xsl:value-of select="$req/rep:Death/rep:Country"/></Pays>
        <Ville><xsl:value-of select="$req/rep:Death/rep:City"/></Ville>
        <Cause>
          <CodeCIM10><xsl:value-of select="$req/rep:Death/rep:Cause/rep:Code"/></CodeCIM10>
          <Libelle><xsl:value-of select="$req/rep:Death/rep:Cause/rep:Text"/></Libelle>
        </Cause>
      </Deces>
      <Transport>
        <PointEntree><xsl:value-of select="$req/rep:Transport/rep:EntryPoint"/></PointEntree>
        <DateArrivee>
          <xsl:call-template name="jma"><xsl:with-param name="iso" select="$req/rep:Transport/rep:ArrivalDate"/></xsl:call-template>
        </DateArrivee>
        <Transporteur><xsl:value-of select="$req/rep:Transport/rep:Carrier"/></Transporteur>
        <NumeroScelle><xsl:value-of select="$req/rep:Transport/rep:SealNumber"/></NumeroScelle>
      </Transport>
    </DemandeAutorisationSanitaire>
  </xsl:template>
</xsl:stylesheet>
