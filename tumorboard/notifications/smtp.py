"""Sending over SMTP: one connection reused for a delivery batch."""

from __future__ import annotations

import smtplib
from collections.abc import Sequence

from flask import current_app

#: errors about one message (the server refused this sender, recipient or body); anything
#: else an SMTP exchange raises (refused connection, dropped connection, timeout) means the
#: server is unreachable and the rest of the batch should wait
MESSAGE_ERRORS: tuple[type[Exception], ...] = (
    smtplib.SMTPRecipientsRefused,
    smtplib.SMTPSenderRefused,
    smtplib.SMTPDataError,
    smtplib.SMTPNotSupportedError,
)


class SmtpSender:
    """A callable `send(from_addr, to_addrs, data)` over one lazily opened SMTP connection.

    Reads SMTP_HOST, SMTP_PORT, SMTP_TIMEOUT (seconds, default 30) and optionally
    SMTP_STARTTLS / SMTP_USERNAME / SMTP_PASSWORD from the app config. Call `close()` at the end.
    """

    def __init__(self) -> None:
        config = current_app.config
        self.host: str = config["SMTP_HOST"]
        self.port: int = int(config["SMTP_PORT"])
        self.timeout: float = float(config.get("SMTP_TIMEOUT", 30))
        self.starttls: bool = bool(config.get("SMTP_STARTTLS", False))
        self.username: str | None = config.get("SMTP_USERNAME")
        self.password: str | None = config.get("SMTP_PASSWORD")
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
        except Exception:
            smtp.close()
            raise
        return smtp

    def __call__(self, from_addr: str, to_addrs: Sequence[str], data: bytes) -> None:
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            self._smtp.sendmail(from_addr, list(to_addrs), data)
        except MESSAGE_ERRORS:
            raise  # the connection is still usable
        except Exception:
            self.close()  # unknown state: reconnect for the next message
            raise

    def close(self) -> None:
        if self._smtp is None:
            return
        smtp, self._smtp = self._smtp, None
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
