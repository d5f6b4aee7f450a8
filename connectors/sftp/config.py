"""The `connection:` settings of an SFTP partner (config/partners/<CODE>.yaml). The field
descriptions are the documentation; validation is pure (no network, no file access)."""
from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_FOLDER = re.compile(r"^/?[A-Za-z0-9_][A-Za-z0-9_./\-]*$")
_PLACEHOLDERS = {"message_id", "message_type"}


class SftpConfig(BaseModel):
    """How the hub reaches one partner's SFTP server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(description="SFTP server host name or address.")
    port: int = Field(22, ge=1, le=65535, description="SFTP server TCP port.")
    username: str = Field(min_length=1, description="Login name on the partner's server.")
    private_key: Path = Field(description="The hub's SSH client private key (OpenSSH or PEM, unencrypted, "
                                          "mode 0600). Secret: its content never appears in logs or errors.")
    host_key: Path = Field(description="The partner server's PINNED public host key (one OpenSSH line, "
                                       "e.g. `ssh-ed25519 AAAA...`). Any other key is refused; unknown keys "
                                       "are never added.")
    inbox: str = Field("inbox", description="Remote folder the hub uploads files to (the partner reads it).")
    outbox: str = Field("outbox", description="Remote folder the partner writes its files to (the hub polls it).")
    done: str = Field("done", description="Remote folder an outbox file is moved to once the hub stored it.")
    failed: str = Field("failed", description="Remote folder an outbox file is moved to when the hub refused it; "
                                              "`<name>.reason.txt` beside it says why (a name too long for "
                                              "that is cut to 249 bytes, ending with a digest of the whole).")
    poll_interval_seconds: float = Field(30.0, ge=0.1, le=86400, description="Seconds between two polls of outbox/.")
    file_name: str = Field("{message_id}.xml", description="Name of an uploaded file; placeholders {message_id} "
                                                           "and {message_type}. Uploads go to `.<name>.part` "
                                                           "first and are renamed when complete.")
    max_file_bytes: int = Field(512 * 1024 * 1024, ge=1024, description="Outbox files larger than this are moved "
                                                                        "to failed/ without being downloaded.")
    stream_above_bytes: int = Field(1024 * 1024, ge=1024, description="Outbox files larger than this are not read "
                                    "into memory: downloaded to the hub's disk in chunks and taken in as a "
                                    "document kept in a file (a streamed batch's acknowledgement).")

    @field_validator("inbox", "outbox", "done", "failed")
    @classmethod
    def _relative_folder(cls, value: str) -> str:
        value = value.rstrip("/") or value
        if not _FOLDER.match(value) or ".." in value.split("/"):
            raise ValueError(f"{value!r} is not a plain folder path")
        return value

    @field_validator("file_name")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        names = set(re.findall(r"{(\w*)}", value))
        if not names <= _PLACEHOLDERS or "{message_id}" not in value:
            raise ValueError("must contain {message_id} and no placeholder other than {message_id}, {message_type}")
        if "/" in value or value.startswith("."):
            raise ValueError("must be a plain file name, not starting with '.'")
        return value

    @model_validator(mode="after")
    def _distinct_folders(self) -> "SftpConfig":
        folders = [self.inbox, self.outbox, self.done, self.failed]
        if len(set(folders)) != len(folders):
            raise ValueError("inbox, outbox, done and failed must be four different folders")
        return self
