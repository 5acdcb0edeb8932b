"""The `canopy` command line: parse arguments, dispatch to commands/, and turn errors into
one line on stderr. Nothing else lives here.

Every CanopyError (and every OS error about a file the user named) becomes one line on
stderr and exit code 1; usage errors exit 2. Listing commands take --json. Everything the
CLI writes passes through `printable` (commands/output.py): see `main`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from commands.attachments import cmd_attachment_save
from commands.bundles import cmd_export, cmd_import
from commands.checkins import (
    cmd_checkin,
    cmd_checkin_pause,
    cmd_checkin_plan,
    cmd_checkin_report,
    cmd_checkin_status,
)
from commands.checklists import (
    cmd_checklist_reviewed,
    cmd_checklist_show,
    cmd_checklist_tick,
    cmd_checklists,
    cmd_publish_checklist,
)
from commands.circles import (
    cmd_away,
    cmd_circle_add,
    cmd_circle_create,
    cmd_circle_list,
    cmd_circle_oncall,
    cmd_circle_remove,
    cmd_circle_set,
)
from commands.content import (
    cmd_alert,
    cmd_guides,
    cmd_publish_guide,
    cmd_show,
    cmd_watch,
    cmd_withdraw,
)
from commands.help_requests import (
    cmd_ack,
    cmd_alerts,
    cmd_help_list,
    cmd_help_request,
    cmd_help_show,
    cmd_help_step,
)
from commands.keys import cmd_exposure, cmd_revocation_export, cmd_revoke_key
from commands.knowwho import (
    cmd_contact_add,
    cmd_contact_export,
    cmd_contact_import,
    cmd_introduce,
    cmd_introductions,
    cmd_query,
    cmd_review,
    cmd_vouch,
)
from commands.library_import import cmd_publish_library
from commands.lifecycle import (
    cmd_backup,
    cmd_config_check,
    cmd_demo,
    cmd_id,
    cmd_init,
    cmd_restore,
    cmd_run,
    cmd_wipe,
)
from commands.networks import cmd_networks, cmd_networks_leave
from commands.output import Printable as _Printable
from commands.output import printable
from commands.parsing import Handler
from commands.parsing import Parser as _Parser
from commands.parsing import action as _action
from commands.parsing import actions as _actions
from commands.status import cmd_status
from commands.trust import cmd_accept, cmd_distrust, cmd_invite, cmd_peers, cmd_trust
from commands.ui import cmd_ui, cmd_ui_user
from protocol.errors import CanopyError, UsageError

__all__ = ["EXIT_ERROR", "EXIT_USAGE", "UsageError", "build_parser", "main", "printable"]

EXIT_ERROR = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="canopy",
        description="Share protection know-how and know-who with organisations you trust.",
    )
    parser.add_argument(
        "--data", metavar="DIR", help="data directory (default: $CANOPY_DATA or the user data dir)"
    )
    parser.add_argument(
        "--passphrase-file", metavar="F", help="read the passphrase from F (unattended use)"
    )
    sub = _actions(parser, dest="command", metavar="COMMAND", required=False)

    def add(name: str, func: Handler, help: str, *, json: bool = False) -> argparse.ArgumentParser:
        """A command; with `json`, its --json flag (what it lists, as one JSON document)."""
        p = _action(sub, name, func, help, description=help)
        if json:
            p.add_argument("--json", action="store_true")
        return p

    p = add("init", cmd_init, "create this node's identity")
    p.add_argument("--name", help="your organisation's name, shown to peers")
    p.add_argument(
        "--no-passphrase",
        action="store_true",
        help="store the key unencrypted (unattended servers only)",
    )

    p = add("run", cmd_run, "run the node in the foreground")
    p.add_argument("--listen", metavar="HOST:PORT")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--verbose", action="store_true", help="log at debug level")
    p.add_argument(
        "--log-format", choices=["text", "json"], help="log lines on stderr (default: config)"
    )

    p = add("id", cmd_id, "show node id, safety code and addresses", json=True)
    p.add_argument("--config", metavar="FILE")

    p = add("invite", cmd_invite, "print a one-time invite code")
    p.add_argument(
        "--address", action="append", metavar="URL", help="where you can be reached (repeatable)"
    )
    p.add_argument("--hours", type=float, default=168.0, help="validity (default 168 = 7 days)")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--network", metavar="NAME", help="invite into this network (default: first)")

    p = add("accept", cmd_accept, "trust the node that gave you an invite code")
    p.add_argument("code")
    p.add_argument(
        "--network-name", metavar="NAME", help="name for the network, if the invite adds one"
    )

    p = add("networks", cmd_networks, "the networks this node belongs to", json=True)
    nets = _actions(p, required=False)
    n = _action(nets, "leave", cmd_networks_leave, "leave a network (not the last one)")
    n.add_argument("name", metavar="NAME")

    p = add("trust", cmd_trust, "trust a node whose id and safety code you compared out of band")
    p.add_argument("id")
    p.add_argument("--address", metavar="URL")
    p.add_argument("--name")

    add("peers", cmd_peers, "list trusted peers", json=True)

    p = add("circle", cmd_circle_list, "groups of peers whose key changes when one leaves")
    circle = _actions(p)
    c = _action(
        circle, "create", cmd_circle_create, "create a circle (you are its owner and first member)"
    )
    c.add_argument("name")
    c.add_argument(
        "--history",
        choices=["all", "new-only"],
        default="all",
        help="whether a new member reads what was shared before it joined (default all)",
    )
    c.add_argument(
        "--response-target", metavar="DURATION", help="first response to help requests (2h)"
    )
    for action, func, about in (
        ("add", cmd_circle_add, "add a peer to a circle you own"),
        ("remove", cmd_circle_remove, "remove a member: a new epoch it never receives"),
    ):
        c = _action(circle, action, func, about)
        c.add_argument("name", metavar="NAME")
        c.add_argument("peer", metavar="PEER")
    c = _action(circle, "list", cmd_circle_list, "the circles this node is in, with their members")
    c.add_argument("--json", action="store_true")
    c = _action(
        circle,
        "oncall",
        cmd_circle_oncall,
        "the on-call rota: list it, add PEER --from --to, or --clear [PEER]",
    )
    c.add_argument("name", metavar="NAME")
    c.add_argument("peer", metavar="PEER", nargs="?", help="a member (name, id, or me)")
    c.add_argument("--from", dest="from_", metavar="WHEN", help="now, 30m, 2026-12-24T18:00")
    c.add_argument("--to", metavar="WHEN", help="as --from (UTC unless an offset is given)")
    c.add_argument("--clear", action="store_true", help="clear PEER's shifts (all, without)")
    c.add_argument("--json", action="store_true")
    c = _action(
        circle, "set", cmd_circle_set, "a circle's settings (the owner's): --response-target"
    )
    c.add_argument("name", metavar="NAME")
    c.add_argument(
        "--response-target", required=True, metavar="DURATION", help="first response (2h)"
    )

    p = add("away", cmd_away, "off duty: not asked, not counted (--until WHEN; --off: back)")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--until", metavar="WHEN", help="a date, date-time (UTC) or duration")
    w.add_argument("--off", action="store_true", help="back on duty now")

    p = add("distrust", cmd_distrust, "withdraw trust from a peer at once")
    p.add_argument("peer")

    p = add("publish", cmd_publish_guide, "publish content")
    kinds = _actions(p, metavar="KIND")
    g = _action(kinds, "guide", cmd_publish_guide, "publish Markdown guides, one record per file")
    g.add_argument("files", nargs="+", metavar="FILE")
    g.add_argument("--title")
    g.add_argument("--lang")
    g.add_argument("--topic", action="append")
    g.add_argument("--region")
    g.add_argument(
        "--to",
        default="peers",
        help="peers | peers-now | network | circle:NAME | ID[,ID...] (default peers)",
    )
    g.add_argument("--replaces", metavar="ID", help="this is a new version of your guide ID")
    g.add_argument("--translation-of", metavar="ID", help="this translates guide ID (with --lang)")
    g.add_argument(
        "--attach",
        action="append",
        metavar="PATH",
        help="attach a file (repeatable); files the Markdown links are attached too",
    )
    g.add_argument(
        "--keep-metadata",
        action="store_true",
        help="do not remove EXIF/GPS/XMP from images or author/XMP from PDFs",
    )
    g = _action(
        kinds,
        "checklist",
        cmd_publish_checklist,
        "publish a checklist (c_NAME.yml, or .md: - [ ] items)",
    )
    g.add_argument("file", metavar="FILE")
    g.add_argument("--title")
    g.add_argument("--lang")
    g.add_argument("--topic", action="append")
    g.add_argument("--review-days", type=int, help="review interval in days (default 180)")
    g.add_argument("--translation-of", metavar="ID", help="this translates checklist ID")
    g.add_argument(
        "--to",
        default="peers",
        help="peers | peers-now | network | circle:NAME | ID[,ID...] (default peers)",
    )
    g.add_argument("--replaces", metavar="ID", help="this is a new version of your checklist ID")

    g = _action(
        kinds, "library", cmd_publish_library, "publish a library folder (DIR/LANG/category/…)"
    )
    g.add_argument("dir", metavar="DIR")
    g.add_argument(
        "--to",
        default="peers",
        help="peers | peers-now | network | circle:NAME | ID[,ID...] (default peers)",
    )
    g.add_argument(
        "--dry-run", action="store_true", help="report what it would do; publish nothing"
    )
    g.add_argument("--json", action="store_true")

    p = add("alert", cmd_alert, "publish an urgent alert, pushed ahead of everything else")
    p.add_argument("text")
    p.add_argument(
        "--to",
        default="network",
        help="peers | peers-now | network | circle:NAME | ID[,ID...] (default network)",
    )
    p.add_argument("--urgency", choices=["normal", "high"], default="normal")
    p.add_argument("--hours", type=float, help="how long the alert stays (default 7 days)")
    p.add_argument("--ack", action="store_true", help="ask every recipient to acknowledge it")

    p = add("ack", cmd_ack, "acknowledge an alert (sealed to its author alone)")
    p.add_argument("id")
    add(
        "alerts",
        cmd_alerts,
        "recent alerts; for yours, who acknowledged and who not yet",
        json=True,
    )
    _help_parsers(
        add("help", cmd_help_list, "help requests: ask a circle, take them on, close them")
    )

    p = add("watch", cmd_watch, "print alerts as they arrive (needs the node running)")
    p.add_argument("--json", action="store_true", help="one JSON document per line")

    p = add("contact", cmd_contact_add, "know-who contacts: add, import, export (HSDS, vCard)")
    acts = _actions(p)
    c = _action(acts, "add", cmd_contact_add, "add a vetted contact")
    c.add_argument("--kind", required=True, help="lawyer, shelter, medical, psychosocial, ...")
    c.add_argument("--name", required=True)
    c.add_argument("--region", required=True, help="ISO 3166 code: KE or KE-30")
    c.add_argument("--lang", action="append", help="BCP 47 tag, repeatable: sw, fr-CD")
    c.add_argument("--channel", action="append", metavar="TYPE:VALUE", help="repeatable")
    c.add_argument("--specialty", action="append", help="repeatable: land-rights")
    c.add_argument("--notes")
    c.add_argument(
        "--share",
        default="peers",
        help="peers | peers-now | circle:NAME | network | network:NAME | on-request | private"
        " (default peers: your peers, those you trust later too)",
    )
    c.add_argument("--to", help="with --share peers: only these peers (ID[,ID...])")
    c.add_argument("--review-days", type=int, default=180, help="re-verify after (default 180)")
    c = _action(
        acts, "import", cmd_contact_import, "add contacts from an Open Referral HSDS 3 directory"
    )
    c.add_argument(
        "--hsds", required=True, metavar="PATH", help="HSDS JSON file, or CSV package directory"
    )
    c.add_argument("--kind", help="kind for services whose taxonomy maps to none")
    c.add_argument("--region", help="region (ISO 3166) for services with no area or address")
    c.add_argument(
        "--share", default="peers", help="peers | network | on-request | private (default peers)"
    )
    c.add_argument("--to", help="with --share peers: only these peers (ID[,ID...])")
    c.add_argument("--review-days", type=int, default=180, help="re-verify after (default 180)")
    c.add_argument("--dry-run", action="store_true", help="report only; add nothing")
    c.add_argument("--json", action="store_true")
    c = _action(
        acts, "export", cmd_contact_export, "write your contacts as HSDS 3 JSON, or one as a vCard"
    )
    c.add_argument("id", nargs="?", metavar="ID", help="with --vcard: the contact")
    c.add_argument("--hsds", metavar="OUT", help="every contact you wrote, as HSDS 3 JSON")
    c.add_argument("--vcard", action="store_true", help="contact ID as a vCard 4.0")
    c.add_argument("--out", metavar="FILE", help="with --vcard: write FILE (default stdout)")

    p = add("query", cmd_query, "search the know-who directory (offline, or --network)", json=True)
    p.add_argument("text", nargs="*")
    p.add_argument("--kind")
    p.add_argument("--region")
    p.add_argument("--lang")
    p.add_argument("--network", action="store_true", help="also ask trusted peers (node running)")
    p.add_argument("--depth", type=int, default=2, help="network hops (default 2)")
    p.add_argument("--limit", type=int, default=20)

    p = add("vouch", cmd_vouch, "vouch for a contact (record id) or an organisation (peer)")
    p.add_argument("target", metavar="PEER|CONTACT_ID")

    add("review", cmd_review, "contacts due for re-verification", json=True)

    p = add("introduce", cmd_introduce, "ask for an introduction to an on-request contact")
    p.add_argument("id")
    p.add_argument("--note", help="a short message for the organisation that decides")

    p = add("introductions", cmd_introductions, "introduction requests, to and from you", json=True)
    p.add_argument("--approve", metavar="REQUEST_ID")
    p.add_argument("--decline", metavar="REQUEST_ID")

    p = add("withdraw", cmd_withdraw, "withdraw one of your records everywhere")
    p.add_argument("id")

    p = add("guides", cmd_guides, "list the guides this node can read, one per lesson", json=True)
    p.add_argument("--lang", help="only lessons with a version in this language")
    p.add_argument("--topic")
    p.add_argument("--region", help="ISO 3166 code: KE matches KE and KE-30")
    p.add_argument("--from", dest="author", metavar="PEER", help="author: id, id prefix or name")
    p.add_argument("--search", metavar="TEXT", help="words of the title or text (prefixes)")
    p.add_argument("--limit", type=int, metavar="N", help="the newest N lessons (default: all)")
    p.add_argument("--config", metavar="FILE", help="for [content] languages")

    add("checklists", cmd_checklists, "checklists this node can read: progress, review", json=True)
    p = add("checklist", cmd_checklists, "one checklist: show, tick, untick, reviewed")
    acts = _actions(p, dest="action")
    c = _action(acts, "show", cmd_checklist_show, "its items, with this organisation's ticks")
    c.add_argument("id")
    c.add_argument("--json", action="store_true")
    for action, about in (("tick", "tick an item done"), ("untick", "untick an item")):
        c = _action(acts, action, cmd_checklist_tick, f"{about} (private: never leaves this node)")
        c.add_argument("id")
        c.add_argument("item", metavar="ITEM", help="its number as shown, or its text's start")
    c = _action(
        acts, "reviewed", cmd_checklist_reviewed, "record a full review now, whatever is ticked"
    )
    c.add_argument("id")

    p = add("checkin", cmd_checkin, "check in (or: plan, pause, resume, status, reached...)")
    p.add_argument("--duress", action="store_true", help="check in under duress (looks normal)")
    p.add_argument("--pin", metavar="PIN", help="a PIN; the plan's duress PIN means duress")
    acts = _actions(p, dest="action", required=False)
    c = _action(acts, "plan", cmd_checkin_plan, "set your check-in plan, watched by a circle")
    c.add_argument("--every", required=True, metavar="DURATION", help="30s, 10m, 12h, 3d")
    c.add_argument("--grace", required=True, metavar="DURATION")
    c.add_argument("--circle", required=True, metavar="NAME", help="the circle that watches")
    c.add_argument("--message", metavar="TEXT", help="what escalation sends (default: a notice)")
    c.add_argument("--confirmations", type=int, metavar="K", help="unreachable reports (2)")
    c.add_argument("--escalate-to", default="network", metavar="AUDIENCE", help="as --to takes")
    c.add_argument("--duress-pin", metavar="PIN", help="a PIN that checks in under duress")
    c = _action(acts, "pause", cmd_checkin_pause, "pause check-ins (travel)")
    c.add_argument("--for", dest="for_", required=True, metavar="DURATION")
    c = _action(
        acts, "resume", cmd_checkin_pause, "resume check-ins: one is due an interval from now"
    )
    c = _action(acts, "status", cmd_checkin_status, "plans this node makes and watches")
    c.add_argument("--json", action="store_true")
    for action, about in (
        ("reached", "you reached the defender: cancels the missed check-in"),
        ("unreachable", "you could not reach the defender (K of these escalate)"),
    ):
        c = _action(acts, action, cmd_checkin_report, about)
        c.add_argument("defender", metavar="DEFENDER", help="id, id prefix or peer name")

    p = add("show", cmd_show, "show one record (a guide: in the reader's language)", json=True)
    p.add_argument("id")
    p.add_argument("--lang", help="the language to read a lesson in (default: [content])")
    p.add_argument("--config", metavar="FILE", help="for [content] languages")

    p = add("attachment", cmd_attachment_save, "write out a guide's attachments")
    acts = _actions(p)
    s = _action(
        acts, "save", cmd_attachment_save, "save one attachment (--out FILE) or all (--all DIR)"
    )
    s.add_argument("id", metavar="GUIDE_ID")
    s.add_argument("name", nargs="?", metavar="NAME")
    s.add_argument("--out", metavar="FILE")
    s.add_argument("--all", metavar="DIR", help="write every attachment into DIR")
    s.add_argument("--json", action="store_true")

    add("status", cmd_status, "identity, uptime, peers, records, rejected inputs, sync", json=True)

    p = add("ui", cmd_ui, "print a one-time sign-in link to the running node's web app")
    p.add_argument("--open", action="store_true", help="also open it in the default browser")
    ui_sub = _actions(p, required=False)
    u = ui_sub.add_parser("user", help="named staff of a community server (see README)")
    u_acts = _actions(u, dest="action")
    ua = _action(u_acts, "add", cmd_ui_user, "add a staff user; prints a one-time enrolment link")
    ua.add_argument("name")
    ua.add_argument("--role", required=True, choices=("reader", "editor", "admin"))
    ul = _action(u_acts, "list", cmd_ui_user, "name, role, enrolled?, last sign-in")
    ul.add_argument("--json", action="store_true")
    ur = _action(u_acts, "remove", cmd_ui_user, "remove a staff user; ends their sessions at once")
    ur.add_argument("name")

    p = add("revocation", cmd_revocation_export, "this node's pre-signed revocation certificate")
    rev = _actions(p)
    r = _action(
        rev,
        "export",
        cmd_revocation_export,
        "print it (or write it to --out FILE); keep it offline",
    )
    r.add_argument("--out", metavar="FILE")

    p = add("revoke-key", cmd_revoke_key, "publish a revocation: this node's key, or --certificate")
    p.add_argument("--certificate", metavar="FILE", help="a certificate exported by another node")

    p = add(
        "exposure",
        cmd_exposure,
        "which peers received which records by ID from this node",
        json=True,
    )
    p.add_argument("id", help="node id (or a trusted peer's name or id prefix)")

    p = add("wipe", cmd_wipe, "destroy this node's keys at once: the data becomes unreadable")
    p.add_argument("--yes", action="store_true", help="really destroy them")
    p = add("export", cmd_export, "write a bundle for one peer to carry by hand (USB stick)")
    p.add_argument("--for", dest="peer", required=True, metavar="PEER", help="id, prefix or name")
    p.add_argument("--out", required=True, metavar="FILE", help="a new file")
    p.add_argument(
        "--network", metavar="NAME", help="only that network's records (default: every shared)"
    )

    p = add("import", cmd_import, "take in a bundle a peer exported for this node")
    p.add_argument("file")

    p = add("backup", cmd_backup, "write an encrypted backup of this node (key and database)")
    p.add_argument("--out", required=True, metavar="FILE", help="a new file")

    p = add("restore", cmd_restore, "recreate a data directory from a backup")
    p.add_argument("file")
    p.add_argument(
        "--data", dest="restore_data", metavar="DIR", help="where to restore (default: --data)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing identity")

    p = add("config", cmd_config_check, "check a configuration file")
    cfg = _actions(p)
    c = _action(cfg, "check", cmd_config_check, "validate FILE")
    c.add_argument("file")

    p = add("demo", cmd_demo, "three nodes on loopback doing the whole story")
    p.add_argument("--keep", action="store_true", help="keep the demo's data directories")
    p.add_argument(
        "--know-who", action="store_true", help="the know-who story: contacts, queries, intros"
    )
    p.add_argument(
        "--networks", action="store_true", help="two networks linked, circles, peers that grow"
    )
    p.add_argument(
        "--rapid-response",
        action="store_true",
        help="check-ins a seized device cannot silence, help requests, acknowledged alerts",
    )
    return parser


def _help_parsers(p: argparse.ArgumentParser) -> None:
    """`canopy help ACTION`: a command named help, apart from -h/--help."""
    from protocol.help import NEEDS

    acts = _actions(p)
    h = _action(acts, "request", cmd_help_request, "ask an audience (a circle) for help")
    h.add_argument("--need", required=True, choices=NEEDS)
    h.add_argument("--region", required=True, help="ISO 3166 code: KE or KE-30")
    h.add_argument("--to", required=True, help="circle:NAME (or network)")
    h.add_argument("text")
    for op, about, extra in (
        ("ack", "acknowledge a request: you have seen it", None),
        ("claim", "take a request on (the earliest claim holds it)", None),
        ("handoff", "hand a request you hold to another member", "peer"),
        ("refer", "propose a know-who contact to the requester", "contact"),
        ("accept", "(requester) accept a referral: its contact is sent to you", "referral"),
        ("resolve", "close a request with its outcome", None),
    ):
        h = _action(acts, op, cmd_help_step, about, op="accept-referral" if op == "accept" else op)
        h.add_argument("id", metavar="ID")
        if extra:
            h.add_argument(extra, metavar=extra.upper() if extra != "contact" else "CONTACT_ID")
        if op == "resolve":
            h.add_argument("--outcome", required=True)
    h = _action(acts, "list", cmd_help_list, "open requests, overdue first")
    h.add_argument("--json", action="store_true")
    h = _action(acts, "show", cmd_help_show, "a request's whole history")
    h.add_argument("id", metavar="ID")
    h.add_argument("--json", action="store_true")


def main(argv: list[str] | None = None) -> int:
    if isinstance(sys.stdout, _Printable):  # called from inside the CLI
        return _main(argv)
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Printable(out), _Printable(err)  # type: ignore[assignment]
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USAGE
        return asyncio.run(args.func(args))
    except UsageError as exc:
        print(f"canopy: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CanopyError as exc:
        print(f"canopy: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # a file or directory the user named
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"canopy: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("canopy: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
