"""SFTP transport: batch files uploaded to a partner's inbox, its files polled from its outbox."""
from connectors.sftp.config import SftpConfig
from connectors.sftp.connector import SftpConnector

__all__ = ["SftpConfig", "SftpConnector"]
