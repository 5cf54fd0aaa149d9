// A small fetch over node:http with a keep-alive agent, for the load-generating client (createClient's `fetch` option).
import http from 'node:http';

/**
 * Node's built-in fetch (undici, WHATWG streams) costs the client process several times the CPU of the server's
 * own HTTP handling. On a machine where the load generator shares the cores with the server and the database,
 * that cost would be measured as the server's. This one does what tRPC's client needs: send the request, return
 * status, headers and a body it reads with json() or text().
 */
export function leanFetch(maxSockets = 64): typeof fetch {
  const agent = new http.Agent({ keepAlive: true, maxSockets });
  return ((input: string | URL, init: RequestInit = {}) =>
    new Promise<Response>((resolve, reject) => {
      const signal = init.signal ?? undefined;
      if (signal?.aborted) return reject(signal.reason);
      const req = http.request(input, { method: init.method ?? 'GET', headers: init.headers as http.OutgoingHttpHeaders, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => resolve(new LeanResponse(res, Buffer.concat(chunks)) as unknown as Response));
      });
      req.on('error', reject);
      signal?.addEventListener('abort', () => req.destroy(signal.reason as Error), { once: true });
      req.end(init.body as string | undefined);
    })) as typeof fetch;
}

class LeanResponse {
  readonly status: number;
  readonly statusText: string;
  readonly ok: boolean;
  private headerList: http.IncomingHttpHeaders;

  constructor(
    res: http.IncomingMessage,
    private readonly body: Buffer,
  ) {
    this.status = res.statusCode ?? 0;
    this.statusText = res.statusMessage ?? '';
    this.ok = this.status >= 200 && this.status < 300;
    this.headerList = res.headers;
  }

  get headers(): Headers {
    const headers = new Headers();
    for (const [name, value] of Object.entries(this.headerList)) {
      for (const v of Array.isArray(value) ? value : [value ?? '']) headers.append(name, v);
    }
    return headers;
  }

  async text(): Promise<string> {
    return this.body.toString('utf8');
  }

  async json(): Promise<unknown> {
    return JSON.parse(this.body.toString('utf8'));
  }
}
