"""What the email channel's new parts cost in one process (decision 0035), no database:

- writing the mail of a message with files (``email.outbound_mime``): seconds and the
  peak of Python's allocations (tracemalloc) for ``--files-mb`` of random bytes, which
  base64 makes a third larger; the dispatcher runs it off the event loop and loads at most
  ``EmailConfig.max_batch_file_bytes`` of files per claim;
- reading a delivery status notification (``email.delivery_report``): microseconds per
  report, an RFC 3464 one as Postfix writes it and an Exim-style ``X-Failed-Recipients``
  one, averaged over ``--reports`` runs.

    python -m bench.email_costs [--files-mb 10 5] [--reports 2000]
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy

from crm_graphql.models import EmailMessage, Message
from crm_graphql.services import email

REPORT = (
    "From: Mail Delivery System <MAILER-DAEMON@mx.customer.test>\r\n"
    "To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
    'Content-Type: multipart/report; report-type=delivery-status; boundary="rep"\r\n\r\n'
    "--rep\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
    "--rep\r\nContent-Type: message/delivery-status\r\n\r\n"
    "Reporting-MTA: dns; mx.customer.test\r\n\r\n"
    "Final-Recipient: rfc822; ada@customer.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n"
    "--rep\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n--rep--\r\n"
)
EXIM = (
    "From: Mail Delivery System <Mailer-Daemon@relay.customer.test>\r\nTo: {to}\r\n"
    "X-Failed-Recipients: ada@customer.test\r\nSubject: Mail delivery failed\r\n\r\n"
    "  ada@customer.test\r\n    SMTP error from remote mail server after RCPT TO:\r\n"
    "    550 5.2.2 Mailbox full\r\n\r\n------ This is a copy of the message ------\r\n\r\n"
    "{headers}\r\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files-mb", type=float, nargs="+", default=[10, 5])
    parser.add_argument("--reports", type=int, default=2000)
    args = parser.parse_args()
    config = email.EmailConfig(mail_from="Acme <support@mail.test>", signing_key=b"k" * 32)
    row = EmailMessage(
        workspace_id=uuid.uuid4(),
        conversation_id=uuid.uuid4(),
        message_id=uuid.uuid4(),
        rfc_message_id=f"{uuid.uuid4()}@mail.test",
        sender="help@acme.example",
        recipients=["ada@customer.test"],
        subject="Invoice 42",
        in_reply_to=None,
        references=[],
    )
    message = Message(id=uuid.uuid4(), body="Hello\n" * 50, created_at=datetime.now(UTC))
    files = [
        email.OutgoingFile(f"file-{i}.bin", "application/pdf", os.urandom(int(mb * 2**20)))
        for i, mb in enumerate(args.files_mb)
    ]
    tracemalloc.start()
    start = time.perf_counter()
    raw = email.outbound_mime(config, row, message, "Acme", "Agent", files)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    total = sum(len(f.content) for f in files)
    print(
        f"mail with {total / 2**20:.0f} MiB of files: {len(raw) / 2**20:.1f} MiB written in "
        f"{elapsed:.2f} s, allocation peak {peak / 2**20:.0f} MiB"
    )
    sent = email.outbound_mime(config, row, message, "Acme", "Agent")
    headers = "".join(
        f"{k}: {v}\r\n" for k, v in message_from_bytes(sent, policy=policy.default).items()
    )
    for name, template in (("RFC 3464", REPORT), ("X-Failed-Recipients", EXIM)):
        report = template.format(to="bounce@mail.test", headers=headers).encode()
        assert email.delivery_report(report) is not None
        start = time.perf_counter()
        for _ in range(args.reports):
            email.delivery_report(report)
        per = (time.perf_counter() - start) / args.reports
        print(f"{name} report ({len(report)} bytes): {per * 1e6:.0f} us to read")


if __name__ == "__main__":
    main()
