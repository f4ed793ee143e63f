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

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");

const SECRET = "sdk-test-secret-not-for-production";

let built: Promise<string> | undefined;

/** buildInboxd builds cmd/inboxd once per test process and returns the binary's path. */
export function buildInboxd(): Promise<string> {
  built ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), "inboxd-sdk-bin-"));
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
    const bin = join(dir, "inboxd");
    await promisify(execFile)("go", ["build", "-o", bin, "./cmd/inboxd"], { cwd: repo });
    return bin;
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
  /** host:port of the WebSocket listener (-ws). */
  wsAddr = "";
  private proc?: ChildProcess;
  private exited?: Promise<void>;

  private constructor(
    private bin: string,
    private dir: string,
    private args: string[],
  ) {}

  /** start runs an inboxd with a fresh data directory, TCP and WebSocket listeners, and extra flags; call stop when done. */
  static async start(extra: string[] = []): Promise<Inboxd> {
    const bin = await buildInboxd();
    const dir = mkdtempSync(join(tmpdir(), "inboxd-sdk-"));
    writeFileSync(join(dir, "secret"), SECRET + "\n", { mode: 0o600 });
    const s = new Inboxd(bin, dir, []);
    s.addr = `127.0.0.1:${await freePort()}`;
    s.args = ["-listen", s.addr, "-admin", "", "-data", join(dir, "data"), "-secret-file", join(dir, "secret"), ...extra];
    s.wsAddr = `127.0.0.1:${await freePort()}`;
    s.args.push("-ws", s.wsAddr);
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
    // A test process that dies leaves no server behind on its ports.
    const orphan = () => proc.kill("SIGKILL");
    process.once("exit", orphan);
    this.exited = new Promise((res) =>
      proc.once("exit", () => {
        process.off("exit", orphan);
        res();
      }),
    );
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
    rmSync(this.dir, { recursive: true, force: true });
  }
}

