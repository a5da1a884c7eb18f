"""A real SMTP server for the notifications tests (aiosmtpd).

Usage: python notifications_smtp.py PORT

Listens on 127.0.0.1:PORT, prints `READY` once it accepts connections, then
one JSON line per message received: the envelope, the subject, the
Message-ID and every non-multipart part with its decoded content. Runs
until killed.
"""

import email
import email.policy
import json
import sys
import threading

from aiosmtpd.controller import Controller


class Handler:
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        parts = []
        for part in message.walk():
            if part.get_content_maintype() == "multipart":
                continue
            parts.append({"content_type": part.get_content_type(), "content": part.get_content()})
        print(
            json.dumps(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "from": str(message["from"]),
                    "to": str(message["to"]),
                    "subject": str(message["subject"]),
                    "message_id": str(message["message-id"]),
                    "content_type": message.get_content_type(),
                    "parts": parts,
                }
            ),
            flush=True,
        )
        return "250 Message accepted for delivery"


def main():
    port = int(sys.argv[1])
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    print("READY", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
