"""SOAP 1.1 over HTTP: outbound calls with zeep from the partner's WSDL; envelopes and faults."""
from connectors.soap.connector import SoapConnector

__all__ = ["SoapConnector"]
