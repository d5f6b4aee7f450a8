"""SOAP 1.1 over HTTP: outbound calls with zeep from the partner's WSDL (`connector`), envelopes and faults
(`envelope`), the hub's inbound SOAP door (`inbound`) and its WSDLs (`wsdl`). Import the module you need:
the package imports none of them, so a light user (a sandbox reading envelopes) pays for nothing else."""
