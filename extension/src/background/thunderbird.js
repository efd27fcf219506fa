// Background of the Thunderbird MailExtension (Manifest V3 event page, Thunderbird 128+).
//
// - every new SI-DEP certificate message (subject and trusted sender) is pushed raw to
//   sidep-helper (POST /api/v1/messages), whatever the folder it lands in;
// - the « Imprimer le certificat » message display action is enabled on SI-DEP messages only;
// - « Indexer les messages existants » (options page, or automatically at start-up when the
//   setting autoIndexOnStartup is on) walks the chosen folders (all by default) and pushes the
//   SI-DEP messages not pushed yet. Messages are known by their Message-ID (headerMessageId): the
//   ones already pushed are recorded in storage.local and not pushed again.
// Listeners are registered at top level: the event page is stopped when idle and started again by
// the events it listens to.

import "../shared/sidep.js";
import { failure, handleHelperRequest, helperClient, isHelperRequest, pushRaw } from "./router.js";
import { loadSettings } from "../shared/settings.js";

const ext = globalThis.messenger ?? globalThis.browser;
const { isCertificateSubject, isTrustedSender } = globalThis.SidepMessage;

const PUSHED_KEY = "pushedMessageIds";
const STATUS_KEY = "indexStatus";
const KEEP_MS = 120 * 24 * 3600 * 1000; // longer than the helper's 90 days of retention
const SUBJECT_QUERY = "Projet SI-DEP";

export function isSidepHeader(header) {
  return Boolean(header && isCertificateSubject(header.subject) && isTrustedSender(header.author));
}

function displayedList(displayed) {
  if (Array.isArray(displayed)) return displayed;
  return (displayed && displayed.messages) || [];
}

/** All the messages of a MessageList, page after page. */
async function* allMessages(listPromise) {
  let page = await listPromise;
  while (page) {
    for (const message of page.messages || []) yield message;
    if (!page.id) break;
    page = await ext.messages.continueList(page.id);
  }
}

async function rawBytes(messageId) {
  const raw = await ext.messages.getRaw(messageId, { data_format: "File" });
  if (typeof raw === "string") {
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i) & 0xff;
    return bytes;
  }
  return new Uint8Array(await raw.arrayBuffer());
}

// --- record of pushed Message-IDs (one writer at a time) -----------------------------------------

let recordQueue = Promise.resolve();

function withRecord(fn) {
  const run = recordQueue.then(async () => {
    const stored = await ext.storage.local.get(PUSHED_KEY);
    const record = stored[PUSHED_KEY] || {};
    const result = await fn(record);
    const limit = Date.now() - KEEP_MS;
    for (const [id, at] of Object.entries(record)) if (at < limit) delete record[id];
    await ext.storage.local.set({ [PUSHED_KEY]: record });
    return result;
  });
  recordQueue = run.catch(() => undefined);
  return run;
}

/** The record of pushed Message-IDs ({headerMessageId: time pushed}). */
async function loadRecord() {
  const stored = await ext.storage.local.get(PUSHED_KEY);
  return stored[PUSHED_KEY] || {};
}

function remember(headerMessageIds) {
  const ids = headerMessageIds.filter(Boolean);
  if (!ids.length) return Promise.resolve();
  const now = Date.now();
  return withRecord((record) => {
    for (const id of ids) record[id] = now;
  });
}

/** Push one message (header from the messages API). Throws HelperError when the helper fails. */
async function pushHeader(client, header) {
  return pushRaw(client, await rawBytes(header.id), { details: false });
}

// Failures after which pushing the next messages is pointless.
const STOP_CODES = new Set(["helper_not_running", "other_program", "wrong_token", "not_configured", "not_paired",
  "bad_address", "forbidden"]);

// --- new mail --------------------------------------------------------------------------------------

async function onNewMail(folder, messageList) {
  const { client } = await helperClient();
  const known = await loadRecord();
  for await (const header of allMessages(Promise.resolve(messageList))) {
    if (!isSidepHeader(header) || known[header.headerMessageId]) continue;
    try {
      await pushHeader(client, header);
      await remember([header.headerMessageId]);
    } catch (error) {
      console.warn("sidep-helper: message non transmis", error && error.code);
      if (error && STOP_CODES.has(error.code)) return;
    }
  }
}

try {
  // Thunderbird 121+: all folders (a filter may move the certificates out of the inbox).
  ext.messages.onNewMailReceived.addListener(onNewMail, true);
} catch {
  ext.messages.onNewMailReceived.addListener(onNewMail);
}

// --- message display action -----------------------------------------------------------------------

ext.messageDisplay.onMessagesDisplayed.addListener((tab, displayed) => {
  const show = displayedList(displayed).some((h) => isCertificateSubject(h.subject));
  const action = show ? ext.messageDisplayAction.enable : ext.messageDisplayAction.disable;
  Promise.resolve(action(tab.id)).catch(() => undefined);
});

/** Push and print the SI-DEP messages displayed in a tab (the message display action's popup). */
async function printMessages(messageIds) {
  let url = "";
  try {
    const { client, settings } = await helperClient();
    url = settings.helperUrl;
    const printed = [];
    for (const messageId of messageIds) {
      const header = await ext.messages.get(messageId);
      if (!header || !isCertificateSubject(header.subject)) continue;
      const pushed = await pushHeader(client, header);
      await remember([header.headerMessageId]);
      if (pushed.certificateId == null) {
        printed.push({ messageId, error: pushed.reasonText, certificate: null });
        continue;
      }
      const answer = await client.print(pushed.certificateId);
      printed.push({ messageId, job: answer.job, printer: answer.printer, certificate: answer.certificate });
    }
    return { ok: true, data: { printed } };
  } catch (error) {
    return failure(error, url);
  }
}

// --- indexing existing messages --------------------------------------------------------------------

let indexing = null;

async function setStatus(status) {
  await ext.storage.local.set({ [STATUS_KEY]: status });
}

async function foldersToWalk(chosen) {
  if (chosen.length) return chosen.map((id) => ({ id, sub: true }));
  let folders = [];
  if (ext.folders && ext.folders.query) {
    folders = await ext.folders.query({});
  } else {
    const stack = [];
    for (const account of await ext.accounts.list(true)) if (account.rootFolder) stack.push(account.rootFolder);
    while (stack.length) {
      const f = stack.pop();
      folders.push(f);
      stack.push(...(f.subFolders || []));
    }
  }
  return folders.filter((f) => !f.isRoot && !f.isVirtual).map((f) => ({ id: f.id, sub: false }));
}

async function queryFolder(folder) {
  let first;
  try {
    first = await ext.messages.query({ folderId: folder.id, includeSubFolders: folder.sub, subject: SUBJECT_QUERY });
  } catch {
    first = await ext.messages.list(folder.id); // filtered by isSidepHeader() all the same
  }
  return allMessages(Promise.resolve(first));
}

async function walk(folderIds) {
  const { values } = await loadSettings(ext.storage);
  const status = { running: true, startedAt: new Date().toISOString(), finishedAt: null,
    folders: 0, seen: 0, pushed: 0, skipped: 0, certificates: 0, errors: 0, error: null };
  await setStatus(status);
  let client;
  try {
    ({ client } = await helperClient());
    await client.health();
    const folders = await foldersToWalk(folderIds && folderIds.length ? folderIds : values.indexFolders);
    const known = await loadRecord();
    const seen = new Set();
    const fresh = [];
    try {
      for (const folder of folders) {
        status.folders += 1;
        for await (const header of await queryFolder(folder)) {
          if (!isSidepHeader(header)) continue;
          const key = header.headerMessageId || `#${header.id}`;
          if (seen.has(key)) continue;
          seen.add(key);
          status.seen += 1;
          if (known[header.headerMessageId]) {
            status.skipped += 1;
            continue;
          }
          try {
            const data = await pushHeader(client, header);
            fresh.push(header.headerMessageId);
            status.pushed += 1;
            if (data.certificateId != null) status.certificates += 1;
          } catch (error) {
            status.errors += 1;
            if (error && STOP_CODES.has(error.code)) throw error;
          }
          if (status.seen % 50 === 0) {
            await remember(fresh.splice(0)); // in batches: the record is one stored object
            await setStatus(status);
          }
        }
      }
    } finally {
      await remember(fresh.splice(0));
    }
  } catch (error) {
    status.error = failure(error, values.helperUrl).error;
  }
  status.running = false;
  status.finishedAt = new Date().toISOString();
  await setStatus(status);
  return status;
}

/** Walk the folders once (a second request while walking joins the running walk). */
export function indexExisting(folderIds) {
  if (!indexing) {
    indexing = walk(folderIds).finally(() => {
      indexing = null;
    });
  }
  return indexing;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Right after start-up Thunderbird lists the accounts before their folders: wait for folders. */
async function waitForFolders(limitMs) {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const folders = await foldersToWalk([]).catch(() => []);
    if (folders.length || Date.now() > deadline) return folders;
    await sleep(500);
  }
}

async function startupWork() {
  try {
    await ext.messageDisplayAction.disable(); // enabled per tab, on SI-DEP messages
  } catch {
    // older Thunderbird: the action stays enabled and says so when the message is not one
  }
  const { values } = await loadSettings(ext.storage);
  if (!values.autoIndexOnStartup) return;
  await waitForFolders(60000);
  // Folder contents may still be loading: look again a little later when nothing was found.
  for (const delay of [0, 3000, 10000]) {
    await sleep(delay);
    const status = await indexExisting();
    if (status.error || status.seen > 0) break;
  }
}

ext.runtime.onStartup.addListener(() => {
  startupWork().catch((err) => console.warn("sidep-helper: start-up", err));
});
ext.runtime.onInstalled.addListener(() => {
  startupWork().catch((err) => console.warn("sidep-helper: installation", err));
});

// --- messaging ----------------------------------------------------------------------------------------

ext.runtime.onMessage.addListener((message, sender, sendResponse) => {
  if (!message || sender.id !== ext.runtime.id) return false;
  if (isHelperRequest(message)) {
    handleHelperRequest(message).then(sendResponse);
    return true;
  }
  if (message.type === "printMessages") {
    printMessages((message.messageIds || []).map(Number)).then(sendResponse);
    return true;
  }
  if (message.type === "indexExisting") {
    const folders = Array.isArray(message.folderIds) ? message.folderIds : [];
    indexExisting(folders).then((status) => sendResponse({ ok: !status.error, data: status }));
    return true;
  }
  return false;
});
