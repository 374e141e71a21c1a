import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/**
 * Who may act. Actions need `admin.token`: API calls send it as `Authorization: Bearer …`;
 * the console's page logs in with it once and then holds a session cookie (HttpOnly,
 * SameSite=Strict, random, kept in this process's memory only), and every form it posts
 * carries a CSRF token bound to that session. Without a token nothing can act.
 */
export const SESSION_COOKIE = 'order_relay_console';
const SESSION_TTL_MS = 12 * 3600_000;
const MAX_SESSIONS = 1000;

export interface Actor {
  /** How it proved itself: 'bearer' or 'session'. */
  via: 'bearer' | 'session';
  /** A short, non-secret name for the log: the session's tag, or 'api'. */
  who: string;
  remote: string;
}

export interface Auth {
  enabled: boolean;
  /** Whether this token is the configured one (constant time). */
  checkToken(candidate: string): boolean;
  /** A new session after a login: its cookie value and its CSRF token. */
  login(): { cookie: string; csrf: string };
  logout(req: IncomingMessage): void;
  /** The session of a request's cookie, if any and not expired. */
  session(req: IncomingMessage): { id: string; tag: string; csrf: string } | undefined;
  /** The actor of an API request (bearer) or a form post (session + CSRF field), or why not. */
  actor(req: IncomingMessage, form?: URLSearchParams): Actor | { refused: string };
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export function createAuth(token: string | undefined): Auth {
  const key = randomBytes(32);
  const sessions = new Map<string, { tag: string; expires: number }>();
  const expected = token ? digest(token) : undefined;
  const csrfOf = (id: string) => createHmac('sha256', key).update(`csrf:${id}`).digest('base64url');

  const checkToken = (candidate: string) => !!expected && timingSafeEqual(digest(candidate), expected);

  function session(req: IncomingMessage) {
    const id = cookie(req, SESSION_COOKIE);
    if (!id) return undefined;
    const s = sessions.get(id);
    if (!s) return undefined;
    if (s.expires < Date.now()) {
      sessions.delete(id);
      return undefined;
    }
    return { id, tag: s.tag, csrf: csrfOf(id) };
  }

  return {
    enabled: !!expected,
    checkToken,
    login() {
      const now = Date.now();
      for (const [id, s] of sessions) if (s.expires < now || sessions.size >= MAX_SESSIONS) sessions.delete(id);
      const id = randomBytes(32).toString('base64url');
      sessions.set(id, { tag: `session-${createHash('sha256').update(id).digest('hex').slice(0, 8)}`, expires: now + SESSION_TTL_MS });
      return { cookie: id, csrf: csrfOf(id) };
    },
    logout(req) {
      const id = cookie(req, SESSION_COOKIE);
      if (id) sessions.delete(id);
    },
    session,
    actor(req, form) {
      const remote = req.socket.remoteAddress ?? '?';
      if (!expected) return { refused: 'actions are off: this instance has no admin.token' };
      const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1]?.trim();
      if (bearer !== undefined) return checkToken(bearer) ? { via: 'bearer', who: 'api', remote } : { refused: 'wrong token' };
      const s = session(req);
      if (!s) return { refused: 'not logged in: log in with admin.token first' };
      const sent = form?.get('csrf') ?? '';
      const a = Buffer.from(sent);
      const b = Buffer.from(s.csrf);
      if (a.length !== b.length || !timingSafeEqual(a, b)) return { refused: 'the form\'s CSRF token does not match this session: reload the page' };
      return { via: 'session', who: s.tag, remote };
    },
  };
}

export function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at > 0 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return undefined;
}

export function sessionCookie(value: string, maxAgeSeconds = SESSION_TTL_MS / 1000): string {
  return `${SESSION_COOKIE}=${value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeSeconds}`;
}
