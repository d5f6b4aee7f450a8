from connectors.rest.connector import RestConnector

__all__ = ["RestConnector"]
