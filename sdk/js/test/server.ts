// A real inboxd for the tests: built from this repository with go build,
// run on the embedded store in a temporary directory, on loopback ports,
// with a development token secret.

import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { connect } from "node:net";
import { WebSocketServer } from "ws";
import { FrameReader, DEFAULT_MAX_FRAME } from "../src/index.js";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");

const SECRET = "sdk-test-secret-not-for-production";

let built: Promise<{ bin: string; ws: boolean }> | undefined;

/** buildInboxd builds cmd/inboxd once per test process; ws says whether it has the -ws listener. */
export function buildInboxd(): Promise<{ bin: string; ws: boolean }> {
  built ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), "inboxd-sdk-bin-"));
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
    const bin = join(dir, "inboxd");
    await promisify(execFile)("go", ["build", "-o", bin, "./cmd/inboxd"], { cwd: repo });
    const help = await new Promise<string>((res) => {
      execFile(bin, ["-h"], (_err, stdout, stderr) => res(stdout + stderr));
    });
    return { bin, ws: /^\s*-ws\b/m.test(help) };
  })();
  return built;
}

/** freePort returns a loopback port that was free a moment ago. */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((res) => srv.listen(0, "127.0.0.1", res));
  const port = (srv.address() as { port: number }).port;
  await new Promise((res) => srv.close(res));
  return port;
}

/** mintToken signs a development token as docs/protocol.md, "Tokens", says. */
export function mintToken(secret: string, user: bigint | number, device: string, ttlSeconds = 3600): string {
  const now = Math.floor(Date.now() / 1000);
  const payload = Buffer.from(JSON.stringify({ u: Number(user), d: device, exp: now + ttlSeconds, iat: now })).toString("base64url");
  const mac = createHmac("sha256", secret).update(payload).digest("base64url");
  return `${payload}.${mac}`;
}

export class Inboxd {
  /** host:port of the TCP listener. */
  addr = "";
  /** host:port of the WebSocket listener: the server's own, or else a bridge's (see bridged). */
  wsAddr = "";
  /** The build has no -ws listener: wsAddr is a bridge in this process that relays frames to the TCP listener. */
  bridged = false;
  private bridge?: WebSocketServer;
  private proc?: ChildProcess;
  private exited?: Promise<void>;

  private constructor(
    private bin: string,
    private dir: string,
    private args: string[],
  ) {}

  /** start runs an inboxd with a fresh data directory; call stop when done. */
  static async start(extra: string[] = []): Promise<Inboxd> {
    const { bin, ws } = await buildInboxd();
    const dir = mkdtempSync(join(tmpdir(), "inboxd-sdk-"));
    writeFileSync(join(dir, "secret"), SECRET + "\n", { mode: 0o600 });
    const s = new Inboxd(bin, dir, []);
    s.addr = `127.0.0.1:${await freePort()}`;
    s.args = ["-listen", s.addr, "-admin", "", "-data", join(dir, "data"), "-secret-file", join(dir, "secret"), ...extra];
    if (ws) {
      s.wsAddr = `127.0.0.1:${await freePort()}`;
      s.args.push("-ws", s.wsAddr);
    } else {
      s.bridge = await bridge(s.addr);
      s.wsAddr = `127.0.0.1:${(s.bridge.address() as { port: number }).port}`;
      s.bridged = true;
    }
    await s.run();
    return s;
  }

  /** token mints a token this server accepts. */
  token(user: bigint | number, device = "sdk-test"): string {
    return mintToken(SECRET, user, device);
  }

  /** run starts the process on the same ports and data and waits until it says it is ready. */
  async run(): Promise<void> {
    const proc = spawn(this.bin, this.args, { stdio: ["ignore", "ignore", "pipe"] });
    this.proc = proc;
    this.exited = new Promise((res) => proc.once("exit", () => res()));
    const lines = createInterface({ input: proc.stderr! });
    const log: string[] = [];
    await new Promise<void>((res, rej) => {
      lines.on("line", (line) => {
        log.push(line);
        if (line.includes("inboxd: ready")) res();
      });
      proc.once("exit", (code) => rej(new Error(`inboxd exited with ${code} before it was ready:\n${log.join("\n")}`)));
    });
  }

  /** kill9 kills the server at once, as a crash would, and waits for it to be gone. */
  async kill9(): Promise<void> {
    this.proc?.kill("SIGKILL");
    await this.exited;
  }

  /** stop stops the server and removes its data. */
  async stop(): Promise<void> {
    this.proc?.kill("SIGTERM");
    await this.exited;
    if (this.bridge) {
      for (const c of this.bridge.clients) c.terminate();
      await new Promise((res) => this.bridge!.close(res));
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * bridge relays WebSocket connections to a TCP listener, one frame per
 * binary message each way: the gateway's WebSocket transport as
 * docs/protocol.md describes it, for a build that lacks it.
 */
async function bridge(tcpAddr: string): Promise<WebSocketServer> {
  const [host, port] = tcpAddr.split(":");
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  wss.on("connection", (ws) => {
    const sock = connect({ host, port: Number(port) });
    const reader = new FrameReader(DEFAULT_MAX_FRAME);
    ws.on("message", (data, isBinary) => {
      if (!isBinary) ws.close(1003, "binary messages only");
      else sock.write(data as Buffer);
    });
    sock.on("data", (chunk) => {
      for (const f of reader.push(chunk)) {
        const out = Buffer.alloc(12 + f.body.length);
        out.writeUInt32BE(f.body.length, 0);
        out[4] = 1;
        out[5] = f.flags;
        out.writeUInt16BE(f.command, 6);
        out.writeUInt32BE(f.requestId, 8);
        out.set(f.body, 12);
        ws.send(out);
      }
    });
    sock.on("error", () => {});
    sock.on("close", () => ws.close());
    ws.on("close", () => sock.destroy());
    ws.on("error", () => {});
  });
  await new Promise((res) => wss.once("listening", res));
  return wss;
}
