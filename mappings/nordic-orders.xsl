<?xml version="1.0" encoding="UTF-8"?>
<!--
  Nordic Aluminium Trading AS: their order export (urn:nordic-alu:orders:2) turned into a
  urn:aimgw:license-submission:1 document. Contract 1.1: an Order's "replaces" becomes
  corrects, its "kind" kind, its AimLicense the LicenseNumber; a Cancel element becomes a
  Cancellation, in document order among the applications. Runs before XSD validation, with every file and
  network access denied (no document(), no includes at run time). See docs/mappings.md.
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:n="urn:nordic-alu:orders:2"
    xmlns="urn:aimgw:license-submission:1"
    exclude-result-prefixes="n">
  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>
  <xsl:strip-space elements="*"/>

  <xsl:template match="/n:Orders">
    <LicenseSubmission schemaVersion="1.0">
      <Header>
        <SubmissionId><xsl:value-of select="n:Batch/@id"/></SubmissionId>
        <xsl:if test="n:Batch/@created">
          <Created><xsl:value-of select="n:Batch/@created"/></Created>
        </xsl:if>
      </Header>
      <xsl:apply-templates select="n:Order | n:Cancel"/>
    </LicenseSubmission>
  </xsl:template>

  <xsl:template match="n:Order">
    <Application ref="{@no}">
      <xsl:if test="@replaces">
        <xsl:attribute name="corrects"><xsl:value-of select="@replaces"/></xsl:attribute>
      </xsl:if>
      <xsl:if test="@kind">
        <xsl:attribute name="kind"><xsl:value-of select="@kind"/></xsl:attribute>
      </xsl:if>
      <EntryType><xsl:value-of select="@entry"/></EntryType>
      <xsl:if test="n:EntryNo">
        <EntryNumber><xsl:value-of select="n:EntryNo"/></EntryNumber>
      </xsl:if>
      <Importer><xsl:value-of select="n:Importer"/></Importer>
      <Exporter><xsl:value-of select="n:Shipper"/></Exporter>
      <!-- Their "Mill" is the manufacturer; an empty one means they do not know it. -->
      <Manufacturer>
        <xsl:choose>
          <xsl:when test="normalize-space(n:Mill)"><xsl:value-of select="n:Mill"/></xsl:when>
          <xsl:otherwise>UNKNOWN</xsl:otherwise>
        </xsl:choose>
      </Manufacturer>
      <CountryOfOrigin><xsl:value-of select="n:Origin"/></CountryOfOrigin>
      <CountryOfExport><xsl:value-of select="n:ShippedFrom"/></CountryOfExport>
      <ExpectedExportDate><xsl:value-of select="n:Ships"/></ExpectedExportDate>
      <ExpectedImportDate><xsl:value-of select="n:Arrives"/></ExpectedImportDate>
      <PortOfEntry><xsl:value-of select="@port"/></PortOfEntry>
      <xsl:if test="n:AimLicense">
        <LicenseNumber><xsl:value-of select="n:AimLicense"/></LicenseNumber>
      </xsl:if>
      <xsl:apply-templates select="n:Item"/>
    </Application>
  </xsl:template>

  <xsl:template match="n:Cancel">
    <Cancellation ref="{@no}" licenseNumber="{@license}">
      <xsl:if test="normalize-space(.)">
        <Reason><xsl:value-of select="substring(normalize-space(.), 1, 200)"/></Reason>
      </xsl:if>
    </Cancellation>
  </xsl:template>

  <xsl:template match="n:Item">
    <Product line="{@pos}">
      <!-- They write the tariff number with dots: ours is 10 digits. -->
      <HTS><xsl:value-of select="translate(@tariff, '.', '')"/></HTS>
      <xsl:if test="n:Text">
        <Description><xsl:value-of select="substring(n:Text, 1, 200)"/></Description>
      </xsl:if>
      <SmeltCountryLargest><xsl:value-of select="n:Smelter/@primary"/></SmeltCountryLargest>
      <SmeltCountrySecond><xsl:value-of select="n:Smelter/@secondary"/></SmeltCountrySecond>
      <CastCountry><xsl:value-of select="n:Cast"/></CastCountry>
      <QuantityKg><xsl:value-of select="n:NetKg"/></QuantityKg>
      <ValueUSD><xsl:value-of select="n:UsdValue"/></ValueUSD>
    </Product>
  </xsl:template>
</xsl:stylesheet>
