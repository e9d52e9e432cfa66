"""Contacts and call history kept by the gateway: the store on its own, call control's use of it,
a real gateway with browser stand-ins and a SIP caller, and the page in Chromium."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import expect

from gateway import callhistory, engineapi
from gateway.config import ConfigError, load
from gateway.contacts import MAX_CONTACTS, Contact, ContactError, ContactIndex, check_name, check_number, party
from gateway.control import CallControl
from gateway.userdata import UserData
from gateway.userfiles import UserFiles

from .browser import DESKTOP, PHONE, OpenPhone
from .fakes import FakeLink, FakePage
from .gatewayprocess import GatewayProcess
from .pagelook import SMALL_TARGETS, contrasts
from .peers import sipp
from .test_browser_usability import CHANGE_ME
from .webclient import WebClient

pytestmark = pytest.mark.timeout(90)

OFFICE = "+442079460000"
GB = '[dialplan]\ncountry = "GB"\n'
SHARED = '[[contacts]]\nname = "Office"\nnumber = "020 7946 0000"\n'


def _entry(peer: str, start: float = 1.0) -> callhistory.HistoryEntry:
    return callhistory.HistoryEntry(peer, "", "out", start, True, 2.5, "normal")


# -- the store ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "kept"),
    [("+44 20 7946 0000", OFFICE), ("020-7946-0000", "02079460000"), ("tel:601", "601"), ("bob", "bob"),
     ("sip:bob@example.org:5070", "sip:bob@example.org:5070"), ("*97", "*97")],
)
def test_a_contacts_number_is_what_the_dial_field_would_call(typed: str, kept: str) -> None:
    assert check_number(typed) == kept


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [("name", "", "1-64 characters"), ("name", "x" * 65, "1-64 characters"), ("name", "bell\x07", "control characters"),
     ("number", "", "Enter a number"), ("number", "12$%ab", "is not a number, a user name or a sip: address"),
     ("number", "two words", "is not a number"), ("number", "sip:" + "a" * 300, "at most 256"),
     ("number", "sip:bob smith@example.org", "is not a number")],
)
def test_bad_fields_are_refused_with_a_sentence_naming_the_field(field: str, value: str, says: str) -> None:
    with pytest.raises(ContactError, match=says) as refused:
        (check_name if field == "name" else check_number)(value)
    assert refused.value.field == field


def test_numbers_match_in_the_home_country_and_uris_by_user_and_host() -> None:
    office = Contact("a", "Office", "020 7946 0000")
    bob = Contact("b", "Bob", "sip:bob@Example.org")
    alice = Contact("c", "Alice", "alice")
    known, american = ContactIndex([office, bob, alice], "GB"), ContactIndex([office], "US")
    assert known.find("sip:+442079460000@192.0.2.1:5060;user=phone") is office
    assert known.find("+44 20 7946 0000") is office
    assert american.find("sip:+442079460000@192.0.2.1") is None  # 020... is no US number
    assert known.find("sip:bob@example.org:5080") is bob
    assert known.find("sip:bob@elsewhere.example") is None
    assert known.find("alice") is alice
    assert party("sip:alice@host", "GB") != party("alice", "GB")  # a stranger's alice is not the web user


async def test_contacts_are_added_edited_and_deleted_and_survive_a_restart(tmp_path: Path) -> None:
    store = UserData("GB", [Contact("shared-1", "Office", "02079460000", shared=True)], UserFiles(tmp_path))
    reply = store.request("alice", "save_contact", {"name": " Bob ", "number": "bob", "favourite": True})
    assert reply["type"] == "contacts"
    bob = reply["contacts"][0]
    assert (bob["name"], bob["number"], bob["favourite"], bob["shared"]) == ("Bob", "bob", True, False)
    assert reply["contacts"][1]["shared"] is True
    store.request("alice", "save_contact", {"contact": bob["id"], "name": "Bob Builder", "number": "sip:bob@example.org"})
    store.request("alice", "save_contact", {"name": "Carol", "number": "+44 7700 900123"})
    store.record("alice", _entry("sip:bob@example.org"))
    assert store.caller_name("alice", "sip:bob@example.org:5060") == ("Bob Builder", bob["id"])
    assert store.caller_name("bob", "sip:bob@example.org") is None  # contacts are each user's own
    await store.flush()
    assert [path.name for path in tmp_path.iterdir()] == ["alice.json"]  # no temporary file left

    again = UserData("GB", [], UserFiles(tmp_path))
    assert [(c["name"], c["favourite"]) for c in again.contacts_message("alice")["contacts"]] == [("Bob Builder", False), ("Carol", False)]
    history = again.history_message("alice")["entries"]
    assert history == [{**_entry("sip:bob@example.org").stored(), "contact_name": "Bob Builder"}]
    carol = again.contacts_message("alice")["contacts"][1]["id"]
    again.request("alice", "delete_contact", {"contact": carol})
    with pytest.raises(ContactError) as gone:
        again.request("alice", "delete_contact", {"contact": carol})
    assert gone.value.code == "no_such_contact"
    with pytest.raises(ContactError) as bad:
        again.request("alice", "save_contact", {"name": "Zed", "number": "no way"})
    assert (bad.value.code, bad.value.field) == ("invalid_contact", "number")
    assert again.request("alice", "clear_history", {}) == {"type": "history", "entries": []}
    await again.flush()
    stored = json.loads((tmp_path / "alice.json").read_text())
    assert [c["name"] for c in stored["contacts"]] == ["Bob Builder"] and stored["history"] == []


async def test_data_read_again_before_its_write_finished_is_the_newest(tmp_path: Path) -> None:
    """A signed-out user's missed calls in quick succession: each is read back with the one before."""
    store = UserData("US", [], UserFiles(tmp_path))
    for index in range(5):
        store.record("bob", _entry(str(index)))
        store.forget("bob")
    await store.flush()
    assert [e["peer"] for e in store.history_message("bob")["entries"]] == ["4", "3", "2", "1", "0"]
    stored = json.loads((tmp_path / "bob.json").read_text())
    assert [e["peer"] for e in stored["history"]] == ["4", "3", "2", "1", "0"]


def test_shared_contacts_cannot_be_changed_and_own_ones_are_bounded(tmp_path: Path) -> None:
    store = UserData("US", [Contact("shared-1", "Office", "200", shared=True)], UserFiles(None))
    with pytest.raises(ContactError) as refused:
        store.request("alice", "delete_contact", {"contact": "shared-1"})
    assert refused.value.code == "read_only"
    for index in range(MAX_CONTACTS):
        store.request("alice", "save_contact", {"name": f"n{index}", "number": str(1000 + index)})
    with pytest.raises(ContactError, match="200 contacts already"):
        store.request("alice", "save_contact", {"name": "one more", "number": "9999"})


def test_history_keeps_the_newest_200(tmp_path: Path) -> None:
    store = UserData("US", [], UserFiles(None))
    for index in range(callhistory.MAX_ENTRIES + 5):
        store.record("alice", _entry(str(index), start=index))
    entries = store.history_message("alice")["entries"]
    assert len(entries) == callhistory.MAX_ENTRIES
    assert entries[0]["peer"] == str(callhistory.MAX_ENTRIES + 4) and entries[-1]["peer"] == "5"


@pytest.mark.parametrize(
    "content",
    ["{not json", "[1, 2]", '{"version": 1, "contacts": [{"id": "x", "name": "", "number": "1"}], "history": []}',
     '{"version": 1, "contacts": [], "history": [{"peer": "1"}]}', '{"version": 7, "contacts": [], "history": []}'],
    ids=["not-json", "not-an-object", "bad-contact", "bad-entry", "unknown-version"],
)
def test_a_corrupt_file_is_moved_aside_and_the_user_starts_afresh(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "alice.json").write_text(content)
    (tmp_path / "bob.json").write_text('{"version": 1, "contacts": [{"id": "b1", "name": "Al", "number": "alice"}], "history": []}')
    store = UserData("US", [], UserFiles(tmp_path))
    with caplog.at_level(logging.WARNING, "gateway.userfiles"):
        assert store.contacts_message("alice")["contacts"] == []
        assert store.history_message("alice")["entries"] == []
    aside = [path.name for path in tmp_path.glob("alice.json.corrupt-*")]
    assert len(aside) == 1 and not (tmp_path / "alice.json").exists()
    assert "alice starts with no contacts and no history" in caplog.text and aside[0] in caplog.text
    assert store.caller_name("bob", "alice") == ("Al", "b1"), "another user's file is untouched"


def test_shared_contacts_come_from_the_configuration(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(GB + SHARED + '[[contacts]]\nname = "Help"\nnumber = "sip:help@example.org"\nfavourite = true\n')
    shared = load(path).contacts
    assert [(c.id, c.name, c.number, c.favourite, c.shared) for c in shared] == [
        ("shared-1", "Office", "02079460000", False, True), ("shared-2", "Help", "sip:help@example.org", True, True)
    ]
    path.write_text('[[contacts]]\nname = "Office"\nnumber = "12$%"\n')
    with pytest.raises(ConfigError, match=r"gateway.toml: contacts\[0\].number: '12\$%' is not a number"):
        load(path)
    path.write_text('[[contacts]]\nname = "Office"\nphone = "200"\n')
    with pytest.raises(ConfigError, match="unknown key 'phone'"):
        load(path)


# -- call control ---------------------------------------------------------------


async def test_a_callers_contact_name_rings_and_every_page_of_the_user_gets_the_history(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(GB + SHARED)
    control = CallControl(load(path))
    link = FakeLink()
    control.attach(link)
    control.on_event(link, engineapi.EngineReady("127.0.0.1:5071", 4))
    page, other_tab, bob = FakePage(), FakePage(), FakePage()
    for session, user in ((page, "alice"), (other_tab, "alice"), (bob, "bob")):
        await control.sign_in(session, user, None)
    control.on_event(link, engineapi.Incoming("in1", "alice", f"sip:{OFFICE}@192.0.2.1", "Switchboard", ""))
    incoming = page.messages[-1]
    assert (incoming["type"], incoming["from_name"], incoming["contact"]) == ("incoming", "Office", "shared-1")
    control.answer(other_tab, "in1", "v=0")
    control.on_event(link, engineapi.Answered("in1"))
    control.on_event(link, engineapi.Ended("in1", "normal", 200, "Call ended"))
    for session in (page, other_tab):
        entry = session.messages[-1]
        assert entry["type"] == "history_entry"
        assert {k: entry["entry"][k] for k in ("peer", "peer_name", "contact_name", "direction", "answered", "cause")} == {
            "peer": f"sip:{OFFICE}@192.0.2.1", "peer_name": "Switchboard", "contact_name": "Office",
            "direction": "in", "answered": True, "cause": "normal",
        }
    assert not any(message["type"] == "history_entry" for message in bob.messages)


async def test_a_group_call_is_in_every_members_history_answered_by_one(tmp_path: Path) -> None:
    """Configured users keep calls that rang them while signed out; one answered what the others missed."""
    path = tmp_path / "gateway.toml"
    users = "".join(f'[users.{name}]\npassword = "{CHANGE_ME}"\n' for name in ("alice", "bob"))
    path.write_text(GB + 'inbound_from = "anyone"\n[groups]\nsales = ["alice", "bob"]\n' + users
                    + '[[inbound]]\ndid = "+442079460000"\ngroup = "sales"\n')
    control = CallControl(load(path), userdata=UserData("GB", [], UserFiles(tmp_path / "users")))
    link = FakeLink()
    control.attach(link)
    control.on_event(link, engineapi.EngineReady("127.0.0.1:5071", 4))
    page = FakePage()
    await control.sign_in(page, "alice", "change-me")
    control.on_event(link, engineapi.Incoming("in1", "+442079460000", "sip:+447700900123@192.0.2.1", "", ""))
    control.answer(page, "in1", "v=0")
    control.on_event(link, engineapi.Answered("in1"))
    control.on_event(link, engineapi.Ended("in1", "normal", 200, "Call ended"))
    await control.userdata.flush()  # bob's history is read back from his file: he has no page to keep it for
    alice, bob = (control.userdata.history_message(user)["entries"] for user in ("alice", "bob"))
    assert [(e["answered"], e["cause"]) for e in alice] == [(True, "normal")]
    assert [(e["answered"], e["cause"], e["duration"]) for e in bob] == [(False, "answered_elsewhere", 0.0)]


# -- a real gateway --------------------------------------------------------------


async def _call_601(client: WebClient) -> None:
    call = await client.call("601", 0)
    await client.next("answered")
    await client.send({"type": "hangup", "call": call})
    await client.next("ended")
    await client.hang_up_media()


async def test_two_pages_of_one_user_share_the_history_which_survives_a_restart(
    start_gateway: Callable[..., GatewayProcess], connect_client: Callable[..., Awaitable[WebClient]]
) -> None:
    gateway = start_gateway()
    first, second = await connect_client(gateway), await connect_client(gateway)
    for page in (first, second):
        assert (page.contacts, page.history) == ([], [])
    await _call_601(first)
    for page in (first, second):
        entry = (await page.next("history_entry"))["entry"]
        assert (entry["peer"], entry["direction"], entry["answered"], entry["cause"]) == ("601", "out", True, "normal")
    await first.close()
    await second.close()
    gateway.stop()

    again = start_gateway(state_dir=gateway.workdir / "state")
    page = await connect_client(again)
    assert [(e["peer"], e["answered"]) for e in page.history] == [("601", True)]
    await page.send({"type": "clear_history", "id": "h1"})
    assert await page.next("history") == {"type": "history", "entries": [], "id": "h1"}


async def test_a_call_from_a_contact_shows_the_contacts_name(
    start_gateway: Callable[..., GatewayProcess], connect_client: Callable[..., Awaitable[WebClient]], tmp_path: Path
) -> None:
    """From another web user (the user's own contact) and from a SIP phone (the operator's shared contact)."""
    gateway = start_gateway(GB + SHARED)
    alice, other_tab = await connect_client(gateway), await connect_client(gateway)
    assert [c["name"] for c in alice.contacts] == ["Office"]
    await alice.send({"type": "save_contact", "name": "x", "number": "no way", "id": "bad"})
    refused = await alice.next("error")
    assert (refused["code"], refused["field"], refused["id"]) == ("invalid_contact", "number", "bad")
    await alice.send({"type": "save_contact", "name": "Bob Builder", "number": "bob", "favourite": True, "id": "k1"})
    saved = await alice.next("contacts")
    assert saved["id"] == "k1" and [c["name"] for c in saved["contacts"]] == ["Bob Builder", "Office"]
    assert (await other_tab.next("contacts"))["contacts"] == saved["contacts"]

    bob = await connect_client(gateway, "bob")
    call = await bob.call("alice", 0)
    incoming = await alice.next("incoming")
    assert (incoming["from_name"], incoming["contact"]) == ("Bob Builder", saved["contacts"][0]["id"])
    await alice.send({"type": "decline", "call": incoming["call"]})
    await bob.next("ended")
    entry = (await alice.next("history_entry"))["entry"]
    assert (entry["peer"], entry["contact_name"], entry["direction"], entry["cause"]) == ("bob", "Bob Builder", "in", "declined")
    assert (await bob.next("history_entry"))["entry"]["peer"] == "alice"
    assert call

    caller = sipp.uac(tmp_path / "office", gateway.uri("alice"), from_user=OFFICE, answer_timeout_s=20)
    with caller:
        incoming = await alice.next("incoming", timeout=15)
        assert (incoming["from"].split("@")[0], incoming["from_name"], incoming["contact"]) == (f"sip:{OFFICE}", "Office", "shared-1")
        await alice.send({"type": "decline", "call": incoming["call"]})
        result = await asyncio.to_thread(caller.result, 30)
    assert result.final_status == 603
    entry = (await alice.next("history_entry"))["entry"]
    assert (entry["contact_name"], entry["answered"]) == ("Office", False)


# -- the page --------------------------------------------------------------------


async def test_a_contact_added_by_keyboard_is_a_favourite_called_with_one_press(
    gateway: GatewayProcess, browser: OpenPhone
) -> None:
    async with browser(gateway) as phone:
        page = phone.page
        await phone.sign_in("alice")
        await expect(page.locator("#contacts-empty")).to_be_visible()

        async def add(name: str, number: str, favourite: bool) -> None:
            await page.locator("#contact-add").focus()
            await page.keyboard.press("Enter")
            await expect(page.locator("#contact-name")).to_be_focused()
            await page.keyboard.type(name)
            await page.keyboard.press("Tab")
            await page.keyboard.type(number)
            await page.keyboard.press("Tab")
            await expect(page.locator("#contact-favourite")).to_be_focused()
            if favourite:
                await page.keyboard.press("Space")
            await page.locator("#contact-number").focus()
            await page.keyboard.press("Enter")
            await expect(page.locator("#contact-form")).to_be_hidden()

        await add("Alpha", "sip:alpha@example.org", False)
        await page.locator("#contact-add").focus()
        await page.keyboard.press("Enter")
        await page.keyboard.type("Typo")
        await page.keyboard.press("Tab")
        await page.keyboard.type("12$%ab")
        await page.keyboard.press("Enter")
        await expect(page.locator("#contact-error")).to_contain_text('"12$%ab" is not a number')
        await expect(page.locator("#contact-number")).to_be_focused()
        await page.locator("#contact-cancel").click()

        await add("Tone line", "601", True)
        rows = page.locator("#contacts .contact")
        await expect(rows).to_have_count(2)
        await expect(rows.first).to_contain_text("Tone line")  # favourites first
        await expect(rows.first.get_by_role("img", name="Favourite")).to_be_visible()
        call = page.get_by_role("button", name="Call Tone line")
        await expect(call).to_be_focused()  # where saving left the keyboard: one press calls

        await page.locator("#contact-add").click()
        await page.fill("#contact-name", "")
        await page.locator("#contact-save").click()
        await expect(page.locator("#contact-error")).to_have_text("Enter a name.")
        await phone.screenshot("contacts-form", DESKTOP)
        assert await page.evaluate(SMALL_TARGETS) == []
        figures = await contrasts(page, "contacts", [".contact-name", ".contact-number", "#contact-error", "#contact-add"])
        await page.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
        await page.locator("#contacts-panel").scroll_into_view_if_needed()
        await phone.screenshot("contacts-form", PHONE)
        assert await page.evaluate(SMALL_TARGETS) == []
        await page.locator("#contact-cancel").click()
        await page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})
        low = {key: value for key, value in figures.items() if value < 4.5}
        assert not low, f"below 4.5:1: {low}"

        await call.focus()
        await page.keyboard.press("Enter")
        await phone.wait_state("answered")
        await expect(page.locator("#number")).to_have_value("601")
        await phone.hang_up()
        await phone.wait_state("ended")
        entry = page.locator("#history li").first
        await expect(entry.locator(".history-who")).to_have_text("Tone line")
        await page.locator("#contacts-panel").scroll_into_view_if_needed()
        await phone.screenshot("contacts-list", DESKTOP)
        await page.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
        await page.locator("#contacts-panel").scroll_into_view_if_needed()
        await phone.screenshot("contacts-list", PHONE)

        await page.get_by_role("button", name="Delete Alpha").click()
        await expect(rows).to_have_count(1)
        await expect(page.locator("#contact-add")).to_be_focused()
        await page.locator("#history-clear").click()  # on the gateway: a reload shows none either
        await expect(page.locator("#history li")).to_have_count(0)
        await page.reload()
        await phone.sign_in("alice")
        await expect(rows).to_have_count(1)
        await expect(page.locator("#history-empty")).to_be_visible()
