// RFC 9421 request signatures made in the browser, as the stock clients make them: one ed25519
// signature with keyid, created and nonce, covering @method, @authority, @target-uri and
// content-digest (RFC 9530, sha-256, also for an empty body). The private key is imported
// non-extractable and never leaves the page.

import { b64decode, b64encode, encoder, sha256 } from "/console/bytes.js";

const KEY_ID = /^[A-Za-z0-9._-]{1,128}$/;
const PEM = /-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\s]+)-----END PRIVATE KEY-----/;

/** The key id the CLI takes from a key file's name: the name without its last suffix (.pem). */
export function keyIdOfFile(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}

/** A signer from a PKCS#8 PEM text (what `orchestrator init` or `keys new` writes). */
export async function loadSigner(pemText, keyId) {
  if (!KEY_ID.test(keyId)) throw new Error(`key id ${JSON.stringify(keyId)} must be 1 to 128 of A-Z a-z 0-9 . _ -`);
  const found = PEM.exec(pemText);
  if (!found) throw new Error("not a PKCS#8 PEM private key (no BEGIN PRIVATE KEY block)");
  const der = b64decode(found[1].replace(/\s+/g, ""), "the key file's body");
  let key;
  try {
    key = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, false, ["sign"]);
  } catch (e) {
    throw new Error(`the key file holds no Ed25519 private key (${e.message || e.name})`);
  }
  return { keyId, key };
}

function nonce() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return b64encode(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The header fields that sign `method url` with `body` (bytes). */
export async function signatureHeaders(signer, method, url, body) {
  const digest = `sha-256=:${b64encode(await sha256(body))}:`;
  const created = Math.floor(Date.now() / 1000);
  const params =
    `("@method" "@authority" "@target-uri" "content-digest");created=${created};` +
    `keyid="${signer.keyId}";alg="ed25519";nonce="${nonce()}"`;
  const base =
    `"@method": ${method}\n"@authority": ${url.host}\n"@target-uri": ${url.href}\n` +
    `"content-digest": ${digest}\n"@signature-params": ${params}`;
  const signature = await crypto.subtle.sign({ name: "Ed25519" }, signer.key, encoder.encode(base));
  return {
    "Content-Digest": digest,
    "Signature-Input": `sig1=${params}`,
    Signature: `sig1=:${b64encode(signature)}:`,
  };
}

/** A signed request to this node: path (with its query) and an optional JSON body. Returns the Response. */
export async function signedFetch(signer, method, path, json) {
  const url = new URL(path, location.origin);
  const body = json === undefined ? new Uint8Array() : encoder.encode(JSON.stringify(json));
  const headers = await signatureHeaders(signer, method, url, body);
  if (json !== undefined) headers["Content-Type"] = "application/json";
  return fetch(url.href, {
    method,
    headers,
    body: json === undefined ? undefined : body,
    cache: "no-store",
    credentials: "omit",
  });
}
