/* 衡阳日报 · 档案问答 — the chat page. Plain JavaScript, no build step, no dependencies.
 *
 * Talks to the API of qa/api.py:
 *   POST /api/ask  {question, history, top_k, date_from?, date_to?, stream: true}
 *        → Server-Sent Events: citations, delta…, done | error
 *   GET  /api/citations/{chunk_id} → passage, citation, whole article, highlight offsets
 *
 * Safety: archive text and user input are only ever inserted as text nodes (textContent /
 * createTextNode); innerHTML is never used.
 */
"use strict";

(() => {
  const KEY_STORAGE = "hengyang-qa.api-key";
  const TOP_K = 5;

  const $ = (id) => document.getElementById(id);
  const ui = {
    app: $("app"),
    scroller: $("scroller"),
    welcome: $("welcome"),
    messages: $("messages"),
    form: $("composer"),
    input: $("question"),
    send: $("send"),
    newChat: $("new-chat"),
    filterToggle: $("filter-toggle"),
    filterLabel: $("filter-label"),
    filterRow: $("filter-row"),
    filterError: $("filter-error"),
    dateFrom: $("date-from"),
    dateTo: $("date-to"),
    dateClear: $("date-clear"),
    scrim: $("scrim"),
    panel: $("panel"),
    panelBody: $("panel-body"),
    panelClose: $("panel-close"),
    panelStatus: $("panel-status"),
    panelContent: $("panel-content"),
    panelPaper: $("panel-paper"),
    panelHeadline: $("panel-headline"),
    panelDate: $("panel-date"),
    panelIssue: $("panel-issue"),
    panelPage: $("panel-page"),
    panelByline: $("panel-byline"),
    copyButton: $("copy-citation"),
    copyLabel: $("copy-label"),
    prevPassage: $("prev-passage"),
    nextPassage: $("next-passage"),
    locateNote: $("locate-note"),
    fallbackQuote: $("fallback-quote"),
    articleText: $("article-text"),
    sourceFile: $("source-file"),
    gbtReference: $("gbt-reference"),
    dateEvidence: $("date-evidence"),
    keyDialog: $("key-dialog"),
    keyForm: $("key-form"),
    keyInput: $("key-input"),
    keyError: $("key-error"),
    keyCancel: $("key-cancel"),
  };

  const state = {
    history: [],        // [{role, content}] of finished turns, sent with each question
    busy: false,
    controller: null,   // AbortController of the running question
    conversation: 0,    // bumped by 新对话 so late answers of the old conversation are dropped
    panelRequest: 0,
    panelData: null,
    activeTrigger: null,
    keyPrompt: null,    // the pending API-key prompt (shared by concurrent 401s)
  };

  // ---------------------------------------------------------------- DOM helpers (text only)
  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === null || value === undefined || value === false) continue;
        if (key === "class") node.className = value;
        else if (key === "text") node.textContent = value;
        else if (key === "testid") node.dataset.testid = value;
        else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  const ICONS = {
    info: ["M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z", "M12 8h.01", "M11 12h1v5h1"],
    alert: ["M12 3 2 20h20L12 3z", "M12 10v4", "M12 17h.01"],
    search: ["M11 18a7 7 0 1 0 0-14 7 7 0 0 0 0 14z", "M20 20l-4-4"],
  };
  function icon(name) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("class", "icon");
    svg.setAttribute("aria-hidden", "true");
    for (const d of ICONS[name]) {
      const path = document.createElementNS(ns, "path");
      path.setAttribute("d", d);
      svg.append(path);
    }
    return svg;
  }

  // ---------------------------------------------------------------- citation formatting
  function formatDate(c) {
    if (!c || !c.date) return "日期不详";
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(c.date);
    const text = m ? `${Number(m[1])}年${Number(m[2])}月${Number(m[3])}日` : String(c.date);
    // Only a masthead or a sidecar prints the date; a file name or the text only implies it.
    return c.date_source === "masthead" || c.date_source === "sidecar" ? text : `${text}（推断）`;
  }
  const formatIssue = (c) => (c && c.issue ? `第${c.issue}号` : "期号不详");
  const formatPage = (c) => (c && c.page ? `第${c.page}版` : "版次不详");
  const paperName = (c) => (c && c.paper ? `《${c.paper}》` : "《衡阳日报》");
  function citationLabel(c) {
    if (c && c.label) return c.label;
    return `${paperName(c)} ${formatDate(c)} ${formatIssue(c)} ${formatPage(c)}${c && c.headline ? `《${c.headline}》` : ""}`;
  }
  const collapse = (s) => String(s || "").replace(/\s+/g, " ").trim();
  /** What 复制引用 copies: the GB/T 7714-2015 reference, or the label and the quote without one. */
  const citationToCopy = (c, text) => (c && c.gbt7714) || `${citationLabel(c)}\n“${collapse(text)}”`;

  // ---------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(title, message, status) {
      super(message);
      this.title = title;
      this.status = status || 0;
    }
  }

  function authHeaders() {
    const key = sessionStorage.getItem(KEY_STORAGE);
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  /** fetch with the API key; on 401 asks for the key (once, shared) and retries. */
  async function apiFetch(url, options = {}) {
    for (;;) {
      const headers = Object.assign({}, options.headers || {}, authHeaders());
      const res = await fetch(url, Object.assign({}, options, { headers }));
      if (res.status !== 401) return res;
      const hadKey = Boolean(sessionStorage.getItem(KEY_STORAGE));
      sessionStorage.removeItem(KEY_STORAGE);
      const key = await askForKey(hadKey);
      if (!key) throw new ApiError("需要访问密钥", "此服务器要求 API 密钥，未提供密钥无法提问。", 401);
      sessionStorage.setItem(KEY_STORAGE, key);
    }
  }

  function askForKey(wrong) {
    if (state.keyPrompt) return state.keyPrompt;
    state.keyPrompt = new Promise((resolve) => {
      const dialog = ui.keyDialog;
      ui.keyError.hidden = !wrong;
      ui.keyInput.value = "";
      const finish = (value) => {
        dialog.removeEventListener("close", onClose);
        state.keyPrompt = null;
        resolve(value);
      };
      const onClose = () => {
        const value = dialog.returnValue === "ok" ? ui.keyInput.value.trim() : "";
        finish(value || null);
      };
      dialog.addEventListener("close", onClose);
      dialog.returnValue = "";
      if (typeof dialog.showModal === "function") dialog.showModal();
      else dialog.setAttribute("open", "");
      ui.keyInput.focus();
    });
    return state.keyPrompt;
  }
  ui.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!ui.keyInput.value.trim()) return;
    ui.keyDialog.close("ok");
  });
  ui.keyCancel.addEventListener("click", () => ui.keyDialog.close(""));

  async function errorFrom(res) {
    let message = "";
    try {
      const body = await res.json();
      if (body && body.error && body.error.message) message = String(body.error.message);
      else if (body && body.detail) message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (_) { /* not JSON */ }
    let title = `服务器出错（HTTP ${res.status}）`;
    if (res.status === 404) title = "未找到（HTTP 404）";
    else if (res.status === 413) title = "内容过长（HTTP 413）";
    else if (res.status === 422) title = "请求无效（HTTP 422）";
    else if (res.status === 429) title = "请求过于频繁（HTTP 429）";
    else if (res.status >= 400 && res.status < 500) title = `请求失败（HTTP ${res.status}）`;
    return new ApiError(title, message || res.statusText || "没有更多信息。", res.status);
  }

  /** Read a text/event-stream body, calling onEvent(type, data) per event. */
  async function readSSE(res, onEvent) {
    const reader = res.body.getReader();
    const decoder = new TextDecoder("utf-8");
    let buffer = "";
    let type = "";
    let data = [];
    const dispatch = () => {
      if (data.length) onEvent(type || "message", data.join("\n"));
      type = "";
      data = [];
    };
    const processLines = (final) => {
      for (;;) {
        const m = /\r\n|\r|\n/.exec(buffer);
        if (!m) break;
        // A lone \r at the end of the buffer may be the first half of \r\n.
        if (!final && m[0] === "\r" && m.index === buffer.length - 1) break;
        const line = buffer.slice(0, m.index);
        buffer = buffer.slice(m.index + m[0].length);
        if (line === "") { dispatch(); continue; }
        if (line.startsWith(":")) continue; // comment / keep-alive ping
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") type = value;
        else if (field === "data") data.push(value);
      }
    };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        processLines(false);
      }
      buffer += decoder.decode();
      processLines(true);
      if (buffer) { buffer += "\n"; processLines(true); }
      dispatch();
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // ---------------------------------------------------------------- conversation view
  function nearBottom() {
    const s = ui.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 140;
  }
  function scrollToBottom(force) {
    if (force || nearBottom()) ui.scroller.scrollTop = ui.scroller.scrollHeight;
    pinned = nearBottom();
  }
  // Stay at the latest message when the composer grows (filter row, long question) or the
  // window shrinks, as long as the reader was at the bottom.
  let pinned = true;
  ui.scroller.addEventListener("scroll", () => { pinned = nearBottom(); }, { passive: true });
  if (typeof ResizeObserver === "function") {
    new ResizeObserver(() => { if (pinned) ui.scroller.scrollTop = ui.scroller.scrollHeight; }).observe(ui.scroller);
  }

  function addUserMessage(question, dates) {
    const note = dates.from || dates.to ? h("div", { class: "msg-filter", text: `限定发表日期：${dateRangeText(dates)}` }) : null;
    const li = h("li", { class: "msg msg-user", testid: "user-message" },
      h("div", { class: "bubble", testid: "user-text", text: question }), note);
    ui.messages.append(li);
    return li;
  }

  /** The assistant's turn: loading → (no-answer notice | streamed answer) → sources, or an error. */
  function createAssistantMessage() {
    const loading = h("div", { class: "loading", testid: "loading", role: "status" },
      h("span", { class: "dots", "aria-hidden": "true" }, h("i"), h("i"), h("i")),
      h("span", { text: "正在检索档案…" }));
    const answer = h("div", { class: "answer", testid: "answer-text", hidden: true });
    const noAnswerBody = h("span", { class: "notice-body-text" });
    const noAnswer = h("div", { class: "notice notice-empty", testid: "no-answer", role: "status", hidden: true },
      icon("search"),
      h("div", { class: "notice-body" }, h("strong", { class: "notice-title", text: "档案中未找到答案" }), noAnswerBody));
    const warning = h("p", { class: "warning-note", testid: "answer-warning", hidden: true });
    const sourcesTitle = h("h3", { class: "sources-title" });
    const sourceList = h("ol", { class: "source-list" });
    const sources = h("section", { class: "sources", testid: "sources", hidden: true }, sourcesTitle, sourceList);
    const errorBox = h("div", { class: "notice-slot" });
    const li = h("li", { class: "msg msg-assistant", testid: "assistant-message", "aria-busy": "true" },
      h("div", { class: "msg-head" }, h("span", { class: "msg-avatar", "aria-hidden": "true", text: "衡" }), h("span", { text: "档案助手" })),
      loading, noAnswer, answer, warning, sources, errorBox);
    ui.messages.append(li);

    let citations = new Map();
    let isNoAnswer = false;

    const view = {
      root: li,
      setCitations(list, noAns) {
        citations = new Map((list || []).map((c) => [Number(c.n), c]));
        isNoAnswer = Boolean(noAns);
        li.classList.toggle("is-no-answer", isNoAnswer);
        renderSources(list || []);
      },
      setText(text, streaming) {
        loading.hidden = true;
        if (isNoAnswer) {
          noAnswer.hidden = false;
          answer.hidden = true;
          noAnswerBody.textContent = collapse(text).replace(/^档案中未找到[^。]*。\s*/, "") || "没有报道能够回答这个问题。";
        } else {
          answer.hidden = false;
          answer.classList.toggle("streaming", Boolean(streaming));
          renderAnswer(answer, text, citations);
        }
      },
      finish(result) {
        view.setCitations(result.citations, result.no_answer);
        view.setText(result.answer || "", false);
        if (result.warning) {
          warning.hidden = false;
          warning.textContent = `注意：${result.warning}`;
        }
        li.removeAttribute("aria-busy");
      },
      stopped(text) {
        loading.hidden = true;
        answer.classList.remove("streaming");
        li.removeAttribute("aria-busy");
        errorBox.replaceChildren(h("p", { class: "warning-note", text: text ? "已停止生成。" : "已停止。" }));
      },
      error(err, retry) {
        loading.hidden = true;
        answer.classList.remove("streaming");
        li.removeAttribute("aria-busy");
        const body = h("div", { class: "notice-body" },
          h("strong", { class: "notice-title", text: err.title || "出错了" }),
          h("span", { testid: "error-text", text: err.message || "" }));
        if (retry) body.append(h("div", null, h("button", { type: "button", class: "btn btn-ghost btn-small", testid: "retry", text: "重试", onclick: retry })));
        errorBox.replaceChildren(h("div", { class: "notice notice-error", testid: "error-message", role: "alert" }, icon("alert"), body));
      },
    };

    function renderSources(list) {
      sources.hidden = list.length === 0;
      sourcesTitle.textContent = isNoAnswer ? "最接近的报道（仅供参考）" : `来源 · ${list.length} 篇报道`;
      sourceList.replaceChildren(...list.map((c) => {
        const cit = c.citation || {};
        const meta = [formatDate(cit), formatIssue(cit), formatPage(cit)].join(" · ");
        const button = h("button", {
          type: "button", class: "source-card", testid: "source-card", "data-n": c.n,
          "aria-label": `查看出处 ${c.n}：${citationLabel(cit)}`,
          onclick: () => openCitation(c, button),
        },
          h("span", { class: "source-num", text: String(c.n) }),
          h("span", { class: "source-headline", text: cit.headline || "（无标题）" }),
          h("span", { class: "source-meta-line", testid: "source-meta", text: meta }),
          h("span", { class: "source-snippet", text: collapse(c.text) }));
        return h("li", null, button);
      }));
    }

    function renderAnswer(container, text, cites) {
      const nodes = [];
      const re = /\[(\d{1,3})\]/g;
      let last = 0;
      let m;
      while ((m = re.exec(text))) {
        const c = cites.get(Number(m[1]));
        if (!c) continue;
        const marker = h("button", {
          type: "button", class: "marker", testid: "citation-marker", "data-n": c.n,
          "aria-label": `出处 ${c.n}：${citationLabel(c.citation)}`, title: citationLabel(c.citation),
          text: String(c.n),
        });
        marker.addEventListener("click", () => openCitation(c, marker));
        // Keep a marker on the line of the character before it (never alone at a line start).
        const before = Array.from(text.slice(last, m.index));
        const prev = nodes[nodes.length - 1];
        if (!before.length && prev && prev.classList && prev.classList.contains("cite-glue")) {
          prev.append(marker);
        } else {
          const tail = before.pop();
          if (before.length) nodes.push(document.createTextNode(before.join("")));
          nodes.push(h("span", { class: "cite-glue" }, tail || null, marker));
        }
        last = m.index + m[0].length;
      }
      if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
      container.replaceChildren(...nodes);
    }

    return view;
  }

  // ---------------------------------------------------------------- asking
  function dateRangeText(d) {
    if (d.from && d.to) return `${d.from} 至 ${d.to}`;
    if (d.from) return `${d.from} 起`;
    return `${d.to} 止`;
  }
  function readDates() {
    const from = ui.dateFrom.value || "";
    const to = ui.dateTo.value || "";
    if (from && to && from > to) return { error: "开始日期不能晚于结束日期。" };
    return { from, to };
  }
  function updateFilterLabel() {
    const d = { from: ui.dateFrom.value, to: ui.dateTo.value };
    const active = Boolean(d.from || d.to);
    ui.filterToggle.classList.toggle("active", active);
    ui.filterLabel.textContent = active ? dateRangeText(d) : "日期范围";
    const check = readDates();
    ui.filterError.hidden = !check.error;
    ui.filterError.textContent = check.error || "";
  }

  function setBusy(busy) {
    state.busy = busy;
    ui.send.classList.toggle("busy", busy);
    ui.send.setAttribute("aria-label", busy ? "停止" : "发送");
    ui.send.title = busy ? "停止" : "发送";
    updateSendState();
  }
  function updateSendState() {
    ui.send.disabled = !state.busy && !ui.input.value.trim();
  }

  async function ask(question, dates) {
    question = question.trim();
    if (!question || state.busy) return;
    dates = dates || readDates();
    if (dates.error) {
      ui.filterRow.hidden = false;
      ui.filterToggle.setAttribute("aria-expanded", "true");
      updateFilterLabel();
      return;
    }
    ui.welcome.hidden = true;
    const userLi = addUserMessage(question, dates);
    const view = createAssistantMessage();
    scrollToBottom(true);

    const body = { question, history: state.history.slice(), top_k: TOP_K, stream: true };
    if (dates.from) body.date_from = dates.from;
    if (dates.to) body.date_to = dates.to;

    const conversation = state.conversation;
    const controller = new AbortController();
    state.controller = controller;
    setBusy(true);
    let text = "";
    let result = null;
    try {
      let res;
      try {
        res = await apiFetch("/api/ask", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
          body: JSON.stringify(body),
          signal: controller.signal,
        });
      } catch (err) {
        if (err instanceof ApiError || err.name === "AbortError") throw err;
        throw new ApiError("无法连接到服务器", "请检查网络连接或服务器是否在运行，然后重试。");
      }
      if (!res.ok) throw await errorFrom(res);
      const type = res.headers.get("content-type") || "";
      if (!type.includes("text/event-stream")) {
        result = await res.json();
        if (conversation === state.conversation) view.finish(result);
      } else {
        try {
          await readSSE(res, (event, raw) => {
            if (conversation !== state.conversation) return;
            let data = null;
            try { data = JSON.parse(raw); } catch (_) { data = null; }
            if (event === "error") {
              throw new ApiError("回答时出错", (data && data.message) || raw || "服务器在生成回答时出错。");
            }
            if (!data) return;
            if (event === "citations") view.setCitations(data.citations, data.no_answer);
            else if (event === "delta") { text += data.text || ""; view.setText(text, true); scrollToBottom(); }
            else if (event === "done") { result = data; view.finish(data); scrollToBottom(); }
          });
        } catch (err) {
          if (err instanceof ApiError || err.name === "AbortError") throw err;
          throw new ApiError("连接中断", "回答还没有传输完，连接就断开了，请重试。");
        }
        if (!result && conversation === state.conversation) {
          throw new ApiError("连接中断", "回答还没有传输完，连接就断开了，请重试。");
        }
      }
      if (conversation === state.conversation && result) {
        state.history.push({ role: "user", content: question }, { role: "assistant", content: result.answer || "" });
      }
    } catch (err) {
      if (conversation !== state.conversation) return;
      if (err.name === "AbortError") view.stopped(text);
      else view.error(err, () => {
        if (state.busy) return;
        userLi.remove();
        view.root.remove();
        ask(question, dates);
      });
      scrollToBottom();
    } finally {
      if (conversation === state.conversation) {
        state.controller = null;
        setBusy(false);
      }
    }
  }

  function newConversation() {
    if (state.controller) state.controller.abort();
    state.controller = null;
    state.conversation += 1;
    state.history = [];
    setBusy(false);
    ui.messages.replaceChildren();
    ui.welcome.hidden = false;
    closePanel(false);
    ui.input.value = "";
    autosize();
    ui.input.focus();
  }

  // ---------------------------------------------------------------- citation panel
  const wide = window.matchMedia("(min-width: 1100px)");
  const phone = window.matchMedia("(max-width: 640px)");

  function openPanel() {
    ui.panel.classList.add("open");
    ui.panel.setAttribute("aria-hidden", "false");
    ui.panel.setAttribute("role", phone.matches || !wide.matches ? "dialog" : "complementary");
    ui.app.classList.add("panel-open");
    ui.scrim.hidden = wide.matches || phone.matches;
  }
  function closePanel(restoreFocus = true) {
    if (!ui.panel.classList.contains("open")) return;
    state.panelRequest += 1;
    ui.panel.classList.remove("open");
    ui.panel.setAttribute("aria-hidden", "true");
    ui.app.classList.remove("panel-open");
    ui.scrim.hidden = true;
    document.querySelectorAll(".marker.active, .source-card.active").forEach((n) => n.classList.remove("active"));
    const trigger = state.activeTrigger;
    state.activeTrigger = null;
    if (restoreFocus && trigger && document.contains(trigger)) trigger.focus({ preventScroll: true });
  }

  function openCitation(cited, trigger) {
    document.querySelectorAll(".marker.active, .source-card.active").forEach((n) => n.classList.remove("active"));
    if (trigger) trigger.classList.add("active");
    state.activeTrigger = trigger || state.activeTrigger;
    openPanel();
    renderLabel(cited.citation || {});
    loadCitation(cited.chunk_id);
    ui.panelClose.focus({ preventScroll: true });
  }

  function renderLabel(c) {
    ui.panelPaper.textContent = c.paper || "衡阳日报";
    ui.panelHeadline.textContent = c.headline || "（无标题）";
    ui.panelDate.textContent = formatDate(c);
    ui.panelDate.classList.toggle("unknown", !c.date);
    ui.panelDate.title = c.date_evidence ? `推断依据：${c.date_evidence}` : "";
    ui.panelIssue.textContent = formatIssue(c);
    ui.panelIssue.classList.toggle("unknown", !c.issue);
    ui.panelPage.textContent = formatPage(c);
    ui.panelPage.classList.toggle("unknown", !c.page);
    ui.panelByline.textContent = c.byline || "";
    ui.panelByline.hidden = !c.byline;
  }

  async function loadCitation(chunkId) {
    const request = ++state.panelRequest;
    state.panelData = null;
    ui.panelContent.hidden = true;
    ui.panelStatus.hidden = false;
    ui.panelStatus.classList.remove("error");
    ui.panelStatus.textContent = "正在载入原文…";
    try {
      let res;
      try {
        res = await apiFetch(`/api/citations/${encodeURIComponent(chunkId)}`, { headers: { Accept: "application/json" } });
      } catch (err) {
        if (err instanceof ApiError) throw err;
        throw new ApiError("无法连接到服务器", "原文载入失败，请检查网络后重试。");
      }
      if (!res.ok) throw await errorFrom(res);
      const data = await res.json();
      if (request !== state.panelRequest) return;
      renderPanel(data);
    } catch (err) {
      if (request !== state.panelRequest) return;
      ui.panelStatus.classList.add("error");
      ui.panelStatus.textContent = `${err.title || "出错了"}：${err.message}`;
    }
  }

  function renderPanel(data) {
    state.panelData = data;
    const c = data.citation || {};
    const article = data.article || {};
    renderLabel(Object.assign({}, c, { headline: c.headline || article.headline, byline: c.byline || article.byline }));

    const text = String(article.text || "");
    const hl = data.highlight;
    const valid = hl && Number.isInteger(hl.start) && Number.isInteger(hl.end) && hl.start >= 0 && hl.end > hl.start && hl.end <= text.length;
    ui.locateNote.hidden = Boolean(valid);
    ui.fallbackQuote.hidden = Boolean(valid);
    ui.fallbackQuote.textContent = valid ? "" : String(data.text || "");
    renderArticle(text || String(data.text || ""), valid ? hl : null);

    ui.prevPassage.disabled = !data.previous;
    ui.nextPassage.disabled = !data.next;
    const file = c.source ? `来源文件：${c.source}` : "";
    const span = Number.isInteger(c.start) && Number.isInteger(c.end) ? `（第 ${c.start}–${c.end} 字）` : "";
    ui.sourceFile.textContent = `${file}${span}${data.chunk_id ? ` · 引用编号 ${data.chunk_id}` : ""}`;
    ui.gbtReference.textContent = c.gbt7714 || "";
    ui.gbtReference.hidden = !c.gbt7714;
    ui.dateEvidence.textContent = c.date_evidence ? `日期为推断：${c.date_evidence}` : "";
    ui.dateEvidence.hidden = !c.date_evidence;
    resetCopy();

    ui.panelStatus.hidden = true;
    ui.panelContent.hidden = false;
    const mark = ui.articleText.querySelector("mark");
    requestAnimationFrame(() => {
      if (mark) {
        const body = ui.panelBody;
        const top = mark.getBoundingClientRect().top - body.getBoundingClientRect().top + body.scrollTop;
        body.scrollTop = Math.max(0, top - body.clientHeight / 3);
      } else {
        ui.panelBody.scrollTop = 0;
      }
    });
  }

  /** The article as paragraphs (split at line breaks), with [start, end) wrapped in <mark>. */
  function renderArticle(text, hl) {
    const paragraphs = [];
    const re = /[^\n]+/g;
    let m;
    while ((m = re.exec(text))) {
      if (m[0].trim()) paragraphs.push([m.index, m.index + m[0].length]);
    }
    const out = [];
    for (const [start, end] of paragraphs) {
      const p = h("p");
      const pieces = [];
      if (hl && hl.end > start && hl.start < end) {
        const a = Math.max(start, hl.start);
        const b = Math.min(end, hl.end);
        if (a > start) pieces.push([start, a, false]);
        pieces.push([a, b, true]);
        if (b < end) pieces.push([b, end, false]);
      } else {
        pieces.push([start, end, false]);
      }
      for (const [a, b, marked] of pieces) {
        let s = text.slice(a, b);
        if (a === start) s = s.replace(/^[ \t\u3000]+/, "");
        if (!s) continue;
        p.append(marked ? h("mark", { testid: "highlight", text: s }) : document.createTextNode(s));
        if (marked) p.classList.add("quoted");
      }
      out.push(p);
    }
    ui.articleText.replaceChildren(...out);
  }

  function resetCopy() {
    ui.copyButton.classList.remove("copied");
    ui.copyLabel.textContent = "复制引用";
  }
  async function copyText(text) {
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        return true;
      }
    } catch (_) { /* fall back below */ }
    const area = h("textarea", { readonly: true, "aria-hidden": "true" });
    area.value = text;
    area.style.position = "fixed";
    area.style.top = "0";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand("copy"); } catch (_) { ok = false; }
    area.remove();
    return ok;
  }
  let copyTimer = 0;
  ui.copyButton.addEventListener("click", async () => {
    const data = state.panelData;
    if (!data) return;
    const c = data.citation || {};
    const ok = await copyText(citationToCopy(c, data.text));
    ui.copyButton.classList.toggle("copied", ok);
    ui.copyLabel.textContent = ok ? "已复制" : "复制失败";
    clearTimeout(copyTimer);
    copyTimer = setTimeout(resetCopy, 2200);
  });
  ui.prevPassage.addEventListener("click", () => state.panelData && state.panelData.previous && loadCitation(state.panelData.previous));
  ui.nextPassage.addEventListener("click", () => state.panelData && state.panelData.next && loadCitation(state.panelData.next));
  ui.panelClose.addEventListener("click", () => closePanel());
  ui.scrim.addEventListener("click", () => closePanel());
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && ui.panel.classList.contains("open") && !ui.keyDialog.open) closePanel();
  });

  // ---------------------------------------------------------------- composer
  function autosize() {
    ui.input.style.height = "auto";
    ui.input.style.height = `${Math.min(ui.input.scrollHeight, window.innerHeight * 0.4)}px`;
    updateSendState();
  }
  ui.input.addEventListener("input", autosize);
  ui.input.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    submit();
  });
  function submit() {
    if (state.busy) return;
    const question = ui.input.value;
    if (!question.trim()) return;
    if (readDates().error) { updateFilterLabel(); ui.filterRow.hidden = false; return; }
    ui.input.value = "";
    autosize();
    ask(question);
  }
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (state.busy) {
      if (state.controller) state.controller.abort();
      return;
    }
    submit();
  });
  ui.newChat.addEventListener("click", newConversation);
  document.querySelectorAll(".suggestion").forEach((button) => {
    button.addEventListener("click", () => ask(button.textContent));
  });
  ui.filterToggle.addEventListener("click", () => {
    const open = ui.filterRow.hidden;
    ui.filterRow.hidden = !open;
    ui.filterToggle.setAttribute("aria-expanded", String(open));
    if (open) ui.dateFrom.focus();
  });
  ui.dateFrom.addEventListener("change", updateFilterLabel);
  ui.dateTo.addEventListener("change", updateFilterLabel);
  ui.dateFrom.addEventListener("input", updateFilterLabel);
  ui.dateTo.addEventListener("input", updateFilterLabel);
  ui.dateClear.addEventListener("click", () => {
    ui.dateFrom.value = "";
    ui.dateTo.value = "";
    updateFilterLabel();
  });

  updateSendState();
  // Focus the question box on desktops; on phones that would pop the keyboard over the page.
  if (!window.matchMedia("(max-width: 640px), (pointer: coarse)").matches) ui.input.focus();
})();
