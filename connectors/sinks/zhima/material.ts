import { createPublicKey, type KeyObject } from 'node:crypto';
import { resolveSecret } from '../../../src/config/secrets.js';
import type { ZhimaSinkConfig } from './config.js';
import { loadCertMaterial } from './cert.js';
import { KeyError, parsePrivateKey, parsePublicKey } from './keys.js';
import type { VerifyKey } from './response.js';
import { RESPONSE_KEY, type CommonParams } from './wire.js';

/**
 * Everything secret a sink needs, resolved and parsed once at creation so a bad key stops
 * start-up with a message naming the config path, instead of failing every delivery.
 */

export interface SinkMaterial {
  privateKey: KeyObject;
  verify: VerifyKey;
  common: CommonParams;
}

function spki(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

function alipayKey(config: ZhimaSinkConfig, path: string, env: NodeJS.ProcessEnv): KeyObject {
  if (config.alipayPublicKey === undefined) throw new KeyError(`${path}.alipayPublicKey: required unless certMode is set`);
  return parsePublicKey(resolveSecret(config.alipayPublicKey, `${path}.alipayPublicKey`, env), `${path}.alipayPublicKey`);
}

/**
 * The document's maximum lengths of the common parameters that come from config: `sign` is
 * at most 344 characters, the base64 of a 256-byte signature, so only an RSA-2048 key makes
 * a signature the gateway takes (a 4096-bit key's is 684); `app_auth_token` is at most 40.
 * Both hold for every call of the sink, so they stop start-up instead of parking each event.
 */
export const SIGN_MAX = 344;
export const APP_AUTH_TOKEN_MAX = 40;

/** Characters of the base64 signature a key makes: 4 per 3 bytes of its modulus, padded. */
function signLength(key: KeyObject): number | undefined {
  const bits = key.asymmetricKeyDetails?.modulusLength;
  return bits === undefined ? undefined : 4 * Math.ceil(Math.ceil(bits / 8) / 3);
}

export function loadSinkMaterial(config: ZhimaSinkConfig, path: string, env: NodeJS.ProcessEnv): SinkMaterial {
  const privateKey = parsePrivateKey(resolveSecret(config.privateKey, `${path}.privateKey`, env), `${path}.privateKey`);
  const length = signLength(privateKey);
  if (length !== undefined && length > SIGN_MAX) {
    const bits = privateKey.asymmetricKeyDetails!.modulusLength!;
    throw new KeyError(`${path}.privateKey: a ${bits}-bit key makes ${length}-character signatures; sign is limited to ${SIGN_MAX} (an RSA-2048 key)`);
  }
  const appAuthToken = config.appAuthToken && resolveSecret(config.appAuthToken, `${path}.appAuthToken`, env);
  if (appAuthToken && appAuthToken.length > APP_AUTH_TOKEN_MAX) {
    throw new KeyError(`${path}.appAuthToken: is ${appAuthToken.length} characters; the limit is ${APP_AUTH_TOKEN_MAX}`);
  }
  const common: CommonParams = { appId: config.appId, ...(appAuthToken && { appAuthToken }) };
  if (!config.certMode) {
    return { privateKey, common, verify: { publicKey: alipayKey(config, path, env), responseKey: RESPONSE_KEY } };
  }
  const certPath = `${path}.certMode`;
  const certs = loadCertMaterial(
    {
      appCert: resolveSecret(config.certMode.appCert, `${certPath}.appCert`, env),
      alipayRootCert: resolveSecret(config.certMode.alipayRootCert, `${certPath}.alipayRootCert`, env),
      alipayCert: resolveSecret(config.certMode.alipayCert, `${certPath}.alipayCert`, env),
    },
    certPath,
  );
  if (!spki(certs.appPublicKey).equals(spki(createPublicKey(privateKey)))) {
    // The gateway would answer isv.invalid-signature for every call; say what is wrong instead.
    throw new KeyError(`${certPath}.appCert: certifies a different key than ${path}.privateKey`);
  }
  return {
    privateKey,
    common: { ...common, appCertSn: certs.appCertSn, alipayRootCertSn: certs.alipayRootCertSn },
    // The certificate carries the Alipay public key; a separately configured alipayPublicKey is ignored.
    verify: { publicKey: certs.alipayPublicKey, responseKey: RESPONSE_KEY, alipayCertSn: certs.alipayCertSn },
  };
}
