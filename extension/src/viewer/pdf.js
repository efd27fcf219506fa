// Shows a certificate's PDF. The helper wants the token in the Authorization header (never in an
// address), so the PDF is fetched here and shown from a blob: address of this extension page.

import { errorMessage } from "../shared/api.js";
import { browserTranslator, localizePage } from "../shared/i18n.js";
import { PairedHelper } from "../shared/pairing.js";

const ext = globalThis.browser ?? globalThis.chrome;
const t = browserTranslator(ext);

async function show() {
  localizePage(document, t);
  const status = document.getElementById("status");
  const id = new URLSearchParams(location.search).get("id");
  const client = new PairedHelper(ext);
  try {
    const blob = await client.pdfBlob(id);
    const url = URL.createObjectURL(new Blob([blob], { type: "application/pdf" }));
    const frame = document.getElementById("pdf");
    frame.src = url;
    frame.hidden = false;
    status.hidden = true;
    document.body.dataset.ready = "1";
  } catch (error) {
    status.textContent = errorMessage(error, t, { url: client.settings ? client.settings.helperUrl : "" });
    status.dataset.state = "error";
    document.body.dataset.ready = "error";
  }
}

show();
