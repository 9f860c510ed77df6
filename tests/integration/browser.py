"""Driving Label Studio 1.23 in headless Chromium as an annotator would: log in, open the labelling
stream, read the task, pick a choice, submit, take screenshots. Helpers only: no test is collected here.

Needs Debian's Chromium and the `playwright` package (the Python driver only: `playwright install`
downloads browsers and does not work on a closed network)::

    apt-get update && apt-get install -y chromium     # Debian 12: Chromium 156, ~130 packages
    .venv/bin/pip install playwright                  # 1.65: the driver (node) ships in the wheel

A test skips when either is missing::

    reason = browser.unavailable()
    if reason:
        pytest.skip(reason)
    with browser.launched() as chrome:
        page = browser.new_page(chrome, base_url)
        browser.login(page, base_url, "alice@loop.local", "alice-pass-123")
        browser.open_stream(page, base_url, project_id)
        assert browser.selected_choices(page) == []
        browser.choose_and_submit(page, "billing")   # the next task's id, or None at the end

Each page made by `new_page` carries `page.network` (a NetworkLog): the other hosts it tried to
reach (blocked) and the body of every "next task" request of the label stream.

Selectors were read off the live pages of Label Studio 1.23.2 (login form, Data Manager, the
editor "LSF"); each says why it was chosen. LSF's classes are BEM names (`lsf-block__element`)
that are stable across its releases, unlike the hashed CSS-module names (`wrapper--vkr3k`), which
are never used here. Timeouts are in milliseconds, as Playwright takes them.
"""

from __future__ import annotations

import json
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # the package is optional: importing this module must work without it
    from playwright.sync_api import Browser, BrowserContext, Page, Request

CHROMIUM = "/usr/bin/chromium"
# --no-sandbox: tests run as root, where Chromium's sandbox refuses to start. The rest keep
# Chromium from calling home (component updates, sync, field trials, QUIC probes), which this
# closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 900}
TIMEOUT = 20_000  # ms: first page loads of Label Studio's 2.4 MB bundle take 1-3 s on 2 cores

# -- selectors ------------------------------------------------------------------------------------
# Login form (Django template users/new-ui/user_login.html): plain ids, stable for years.
LOGIN_EMAIL, LOGIN_PASSWORD, LOGIN_SUBMIT = "#email", "#password", "#login-form button[type=submit]"
# The editor's text object: <div class="lsf-richtext__container"> holding one
# <span class="lsf-richtext__line"> per line of the task's text. Scoped to the main view so the
# Data Manager's table cells (also showing the text) never match.
TASK_TEXT = ".lsf-main-view__annotation .lsf-richtext__container"
# The <Choices> control renders antd radios (checkboxes for multiple choice), one per <Choice>,
# the <input>'s `name` being the choice's value: `input[name="billing"]` is exact, where the
# accessible name carries the hotkey hint ("billing[1]").
CHOICE_INPUTS = ".lsf-main-view__annotation .lsf-choices input[type=radio], " \
                ".lsf-main-view__annotation .lsf-choices input[type=checkbox]"
# Bottom bar buttons carry data-testid (Playwright's get_by_test_id).
SUBMIT_TESTID, SKIP_TESTID = "bottombar-submit-button", "bottombar-skip-button"
# The bottom bar's task counter: "<task id>" then "<n> of <m>" (the stream's history).
CURRENT_TASK_ID = ".lsf-current-task__task-id"
# The annotation tabs above the editor (Data Manager task view): one `.lsf-annotation-button` per
# annotation, draft or prediction, with `data-annotation-id`, BEM modifiers `_draft` / `_submitted`
# / `_selected`, the author's avatar (<img alt="ALICE@LOOP.LOCAL">; a prediction has an icon
# instead) and `__name` (the author, shortened in the middle when long, or the model version).
# The label stream shows none: it only ever opens one new annotation of the user's own.
ANNOTATION_TAB = ".lsf-annotations-carousel .lsf-annotation-button"
# LSF's modal (the project's "Labeling Instructions", shown once when a stream opens if the
# project has show_instruction): a close button labelled for screen readers.
CLOSE_MODAL = "button[aria-label='Close modal']"
# The end of the stream (next_task answered 404): the editor is replaced by an antd <Result>
# "No More Tasks Left in Queue" / "All tasks in the queue have been completed".
STREAM_FINISHED = ".lsf-label-view .ant-result"
# The Data Manager's table rows and its toolbar's "Label All Tasks" split button.
DM_ROW = ".lsf-table__row-wrapper"


# -- availability and launch ----------------------------------------------------------------------
def chromium_path() -> str | None:
    """/usr/bin/chromium when both it and the playwright package are installed, else None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None
    return CHROMIUM if Path(CHROMIUM).exists() or shutil.which(CHROMIUM) else None


def unavailable() -> str | None:
    """A one-line reason for pytest.skip when the browser cannot run here, else None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is absent (apt-get install -y chromium)"
    return None


@contextmanager
def launched(headless: bool = True, slow_mo: float = 0) -> Iterator["Browser"]:
    """A headless Chromium (Debian's, never a downloaded one), closed on exit.

    One browser serves a whole test: give each annotator a context of their own (`new_page`),
    so each has their own cookies, i.e. their own login.
    """
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError(unavailable() or "Chromium is unavailable")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=headless, args=CHROMIUM_ARGS,
                                     slow_mo=slow_mo)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class NetworkLog:
    """What a browser context asked for: calls to other hosts (blocked), and the label stream's
    requests for its next task with the body each carried."""

    base_url: str
    external: list[str] = field(default_factory=list)
    next_task: list[dict[str, Any]] = field(default_factory=list)

    def on_request(self, request: "Request") -> None:
        url = request.url
        if not url.startswith(self.base_url) and not url.startswith(("data:", "blob:", "about:")):
            self.external.append(url)
        elif ("/api/dm/actions" in url and "id=next_task" in url) or re.search(r"/api/projects/\d+/next", url):
            try:
                body = json.loads(request.post_data or "{}")
            except ValueError:
                body = {"raw": request.post_data}
            self.next_task.append({"url": url[len(self.base_url):], "body": body})


def new_page(browser: "Browser", base_url: str, *, block_external: bool = True,
             viewport: dict[str, int] | None = None) -> "Page":
    """A page in a fresh browser context (own cookies and localStorage).

    With `block_external`, requests to any host but `base_url` are aborted at once (Label Studio's
    page loads Sentry from a CDN and reports to sentry.io unless FRONTEND_SENTRY_DSN is empty;
    aborted, they cannot slow the page waiting on DNS). Every request is still recorded in
    `page.network` (a NetworkLog), so a test can assert what was attempted.
    """
    base = base_url.rstrip("/")
    context: BrowserContext = browser.new_context(viewport=viewport or VIEWPORT)
    context.set_default_timeout(TIMEOUT)
    log = NetworkLog(base)
    context.on("request", log.on_request)
    if block_external:
        context.route(lambda url: not url.startswith(base) and url.startswith("http"), lambda route: route.abort())
    page = context.new_page()
    page.network = log  # type: ignore[attr-defined]
    return page


# -- pages ----------------------------------------------------------------------------------------
def login(page: "Page", base_url: str, email: str, password: str) -> None:
    """Log in through Label Studio's login form; raises AssertionError when the form comes back
    (wrong password, unknown user)."""
    page.goto(f"{base_url.rstrip('/')}/user/login/")
    page.fill(LOGIN_EMAIL, email)
    page.fill(LOGIN_PASSWORD, password)
    with page.expect_navigation():
        page.click(LOGIN_SUBMIT)
    if "/user/login" in page.url:
        errors = page.locator(".field_errors, .error, [class*=error]").all_inner_texts()
        raise AssertionError(f"Label Studio refused the login of {email}: {' '.join(errors).strip() or page.url}")


def open_data_manager(page: "Page", base_url: str, project_id: int, tab_id: int | None = None) -> None:
    """The project's Data Manager (its task table), on tab `tab_id` when given; waits until the
    table shows (rows or its empty state)."""
    url = f"{base_url.rstrip('/')}/projects/{project_id}/data" + (f"?tab={tab_id}" if tab_id else "")
    page.goto(url)
    # The toolbar's button renders with the table, after the project and the views loaded.
    page.get_by_role("button", name="Label All Tasks").wait_for()
    page.locator(f"{DM_ROW}, [data-testid=empty-state]").first.wait_for()


def open_stream(page: "Page", base_url: str, project_id: int, *, mode: str = "all",
                tab_id: int | None = None) -> int | None:
    """Open the project's labelling stream as an annotator does, from the Data Manager; returns
    the id of the first task it shows, None when it has none for this user.

    mode "all": the toolbar's "Label All Tasks" button. It stores "all" in localStorage
    (dm:labelstream:mode) and the stream then asks for its next task with an empty body: Label
    Studio picks by the project's sampling and ignores the tab's filters and ordering.
    mode "displayed": the button's menu, "Label Tasks As Displayed": the tab's filters and ordering
    go with every request and Label Studio serves the first unlabelled task in the tab's order.
    mode "url": straight to /projects/{id}/data?labeling=1 (the Projects page's "Label" link);
    with nothing in localStorage the request carries the tab's filters, ordering and selection,
    i.e. like "displayed".
    """
    base = base_url.rstrip("/")
    if mode == "url":
        with page.expect_response(_is_next_task) as resp:
            page.goto(f"{base}/projects/{project_id}/data?labeling=1" + (f"&tab={tab_id}" if tab_id else ""))
    else:
        open_data_manager(page, base, project_id, tab_id)
        with page.expect_response(_is_next_task) as resp:
            if mode == "all":
                page.get_by_role("button", name="Label All Tasks").click()
            elif mode == "displayed":
                # The split button's arrow ("Toggle open", next to it in its button group) opens a
                # menu of one item.
                label_all = page.get_by_role("button", name="Label All Tasks")
                label_all.locator("xpath=..").get_by_role("button", name="Toggle open").click()
                page.get_by_text("Label Tasks As Displayed", exact=True).click()
            else:
                raise ValueError(f"mode must be 'all', 'displayed' or 'url', not {mode!r}")
    return _after_next_task(page, resp.value, first=True)


def open_task(page: "Page", base_url: str, project_id: int, task_id: int, tab_id: int | None = None) -> None:
    """The Data Manager's task view ("quick view") of one task, where every annotation of the
    task shows as a tab above the editor."""
    query = f"?task={task_id}" + (f"&tab={tab_id}" if tab_id else "")
    page.goto(f"{base_url.rstrip('/')}/projects/{project_id}/data{query}")
    page.locator(TASK_TEXT).first.wait_for()
    close_instructions(page)


def close_instructions(page: "Page", wait: int = 0) -> bool:
    """Close the "Labeling Instructions" modal if it is up (waiting up to `wait` ms for it)."""
    button = page.locator(CLOSE_MODAL)
    try:
        button.first.wait_for(state="visible", timeout=max(wait, 1))
    except Exception:  # noqa: BLE001 - playwright's TimeoutError: no modal
        return False
    button.first.click()
    button.first.wait_for(state="hidden")
    return True


def _is_next_task(response) -> bool:
    return "/api/dm/actions" in response.url and "id=next_task" in response.url and \
        response.request.method == "POST"


def _after_next_task(page: "Page", response, first: bool = False) -> int | None:
    """Wait until the stream shows what the next_task answer said: that task, or no task (404)."""
    if response.status == 404:
        # No task left for this user: the editor gives way to "No More Tasks Left in Queue".
        page.locator(STREAM_FINISHED).first.wait_for()
        return None
    assert response.ok, f"Label Studio answered the next task with HTTP {response.status}"
    task_id = int(response.json()["id"])
    # The bottom bar's counter shows the task id once LSF has loaded the task.
    page.wait_for_function(
        "([sel, id]) => { const el = document.querySelector(sel); "
        "return el && el.firstChild && el.firstChild.textContent.trim() === String(id); }",
        arg=[CURRENT_TASK_ID, task_id], timeout=TIMEOUT)
    page.locator(TASK_TEXT).first.wait_for()
    # The instructions modal opens a moment after the first task: close it before anyone clicks.
    close_instructions(page, wait=1500 if first else 0)
    return task_id


# -- the task on screen ---------------------------------------------------------------------------
def current_task_id(page: "Page") -> int | None:
    """The id of the task in the editor (from the bottom bar), None when none is shown."""
    counter = page.locator(CURRENT_TASK_ID)
    if not counter.count():
        return None
    text = counter.first.evaluate("el => el.firstChild ? el.firstChild.textContent : ''").strip()
    return int(text) if text.isdigit() else None


def current_task_text(page: "Page") -> str:
    """The text of the task being labelled, as shown (lines joined by newlines)."""
    lines = page.locator(f"{TASK_TEXT} .lsf-richtext__line")
    if lines.count():
        return "\n".join(t.rstrip("\n") for t in lines.all_inner_texts())
    return page.locator(TASK_TEXT).first.inner_text()


def choices(page: "Page") -> list[str]:
    """Every choice the editor offers, in order."""
    return page.locator(CHOICE_INPUTS).evaluate_all("els => els.map(e => e.name)")


def selected_choices(page: "Page") -> list[str]:
    """The choices ticked in the editor right now (a pre-filled prediction or annotation shows here)."""
    return page.locator(CHOICE_INPUTS).evaluate_all("els => els.filter(e => e.checked).map(e => e.name)")


def choose(page: "Page", label: str) -> None:
    """Tick one choice by its value; asserts it is then the only one ticked (single-choice config)."""
    close_instructions(page)
    box = page.locator(f".lsf-main-view__annotation .lsf-choices input[name={json.dumps(label)}]")
    assert box.count() == 1, f"no choice {label!r} on screen (choices: {choices(page)})"
    # The antd input is transparent but covers its radio: a real click on it, as a mouse would.
    box.check()
    assert selected_choices(page) == [label], f"after ticking {label!r}: {selected_choices(page)}"


def submit(page: "Page") -> int | None:
    """Press Submit and wait until the stream shows its next task; returns that task's id, None
    when the stream has no more tasks for this user. Asserts Label Studio saved the annotation."""
    with page.expect_response(lambda r: r.request.method == "POST" and "/annotations" in r.url
                              and "/api/tasks/" in r.url) as saved:
        with page.expect_response(_is_next_task) as nxt:
            page.get_by_test_id(SUBMIT_TESTID).click()
    assert saved.value.status == 201, f"submitting failed: HTTP {saved.value.status} {saved.value.text()[:200]}"
    return _after_next_task(page, nxt.value)


def choose_and_submit(page: "Page", label: str) -> int | None:
    """Tick `label`, submit, and wait for the next task (its id) or the end of the stream (None)."""
    choose(page, label)
    return submit(page)


def skip(page: "Page") -> int | None:
    """Press Skip (a cancelled annotation) and wait for the next task, as `submit`."""
    with page.expect_response(_is_next_task) as nxt:
        page.get_by_test_id(SKIP_TESTID).click()
    return _after_next_task(page, nxt.value)


def stream_finished(page: "Page") -> bool:
    """Whether the stream shows its end ("No More Tasks Left in Queue")."""
    return page.locator(STREAM_FINISHED).count() > 0


_TABS_JS = """els => els.map(e => {
  const img = e.querySelector('.lsf-annotation-button__userpic img[alt]');
  const name = e.querySelector('.lsf-annotation-button__name');
  const kind = !img ? 'prediction'
    : e.classList.contains('lsf-annotation-button_draft') ? 'draft' : 'annotation';
  return {id: e.dataset.annotationId, kind, author: img ? img.alt.toLowerCase() : null,
          name: name ? name.innerText.trim() : '', selected: e.classList.contains('lsf-annotation-button_selected')};
})"""


def annotation_tabs(page: "Page") -> list[dict[str, Any]]:
    """The tabs above the editor, one per annotation, draft or prediction, in order; each
    {"id", "kind", "author", "name", "selected"}:

    - kind "annotation" (saved; `id` is its Label Studio id), "draft" (made in this browser and not
      saved yet, e.g. the one LSF makes from a prediction; `id` is a client id) or "prediction"
      (`name` is its model version, `author` None);
    - author: the annotator's username or e-mail, lower-cased (the avatar's alt text; `name` shows
      the same but LSF shortens long ones in the middle: "alice@lo....local").

    The label stream shows no tabs at all; the Data Manager's task view shows every annotation
    of the task, whoever made it.
    """
    return page.locator(ANNOTATION_TAB).evaluate_all(_TABS_JS)


def visible_annotation_count(page: "Page") -> int:
    """How many saved annotations (anyone's) have a tab above the editor: 0 in the label stream."""
    return sum(1 for t in annotation_tabs(page) if t["kind"] == "annotation")


def screenshot(page: "Page", path: str | Path, full_page: bool = False) -> Path:
    """Save a PNG of the page (folders created); returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page)
    return path


# -- Data Manager table ---------------------------------------------------------------------------
# Header cells carry the column id: <span data-id="tasks:completed_at" class="lsf-table__cell lsf-th">.
# Row cells (`.lsf-table-row > .lsf-table__cell`) have none but come in the header's order, between
# the row's checkbox (`.lsf-select-row`) and its source button (`.lsf-show-source`). The "Annotated
# by" cell shows avatars: initials as text, the username in the <img alt>.
_TABLE_JS = """() => {
  const ids = [...document.querySelectorAll('.lsf-table-head [data-id]')].map(e => e.dataset.id);
  return [...document.querySelectorAll('.lsf-table-row')].map(row => {
    const cells = [...row.children].filter(c => c.classList.contains('lsf-table__cell')
      && !c.classList.contains('lsf-select-row') && !c.classList.contains('lsf-show-source'));
    const out = {};
    cells.forEach((c, i) => {
      const alts = [...c.querySelectorAll('.lsf-annotators img[alt]')].map(img => img.alt);
      out[ids[i] || ('#' + i)] = alts.length ? alts.join(',') : c.innerText.trim();
    });
    return out;
  });
}"""


def table_columns(page: "Page") -> list[str]:
    """The ids of the Data Manager table's columns, as shown ("tasks:id", "tasks:completed_at",
    "tasks:annotators", "tasks:predictions_score", "tasks:data.text", ...)."""
    return page.locator(".lsf-table-head [data-id]").evaluate_all("els => els.map(e => e.dataset.id)")


def table_rows(page: "Page") -> list[dict[str, str]]:
    """The Data Manager table's rows on screen (it is virtualised: rows scrolled out of view are
    not in the page; 30 are loaded at first), each {column id: cell text}; "tasks:annotators"
    holds the annotators' usernames, comma-separated (the avatars' alt text, upper-cased by Label
    Studio). Empty cells are "" (a tab without hiddenColumns leaves Completed and Annotated by
    empty: Label Studio computes those columns only for tabs that list what they hide)."""
    return page.evaluate(_TABLE_JS)
