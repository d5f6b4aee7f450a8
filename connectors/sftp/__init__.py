"""SFTP transport: batch files uploaded to a partner's inbox, its files polled from its outbox (`connector`,
its settings in `config`)."""
