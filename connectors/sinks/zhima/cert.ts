import { createHash, X509Certificate, type KeyObject } from 'node:crypto';
import { KeyError } from './keys.js';

/**
 * Public-key-certificate mode. Requests carry two extra signed parameters derived from the
 * certificates; responses carry `alipay_cert_sn` and are verified with the key inside the
 * Alipay public-key certificate.
 *
 * SN = md5hex(issuer DN with RDNs in reverse order as "CN=…,OU=…,O=…,C=…" + serial in decimal).
 * The root SN covers only the RSA-signed roots of the bundle, joined with `_`.
 */

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
/** DER content bytes of OID 1.2.840.113549.1.1 (PKCS#1 signature algorithms). */
const RSA_SIG_OID_PREFIX = Buffer.from([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01]);

export interface CertMaterial {
  appCertSn: string;
  alipayRootCertSn: string;
  alipayCertSn: string;
  alipayPublicKey: KeyObject;
  /** The app public key the app certificate certifies; must match the app private key. */
  appPublicKey: KeyObject;
}

function parseCerts(pem: string, what: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERT) ?? [];
  try {
    const certs = blocks.map((block) => new X509Certificate(block));
    if (certs.length > 0) return certs;
  } catch {
    // fall through to the error below
  }
  throw new KeyError(`${what}: not a PEM certificate`);
}

export function certSn(cert: X509Certificate): string {
  // Node renders the issuer one RDN per line, most significant first (C=… … CN=…).
  const issuer = cert.issuer.split('\n').reverse().join(',');
  const serial = BigInt(`0x${cert.serialNumber}`).toString(10);
  return createHash('md5').update(issuer + serial, 'utf8').digest('hex');
}

/** Length of a DER length field at `i` and the length it encodes. */
function derLength(der: Buffer, i: number): [size: number, length: number] {
  const first = der[i]!;
  if (first < 0x80) return [1, first];
  const count = first & 0x7f;
  let length = 0;
  for (let k = 1; k <= count; k++) length = length * 256 + der[i + k]!;
  return [1 + count, length];
}

/** True when the certificate's signatureAlgorithm OID is one of PKCS#1's RSA algorithms. */
export function isRsaSigned(cert: X509Certificate): boolean {
  const der = cert.raw;
  // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE { OID, … }, … }
  const [outerSize] = derLength(der, 1);
  const tbsAt = 1 + outerSize;
  const [tbsSize, tbsLength] = derLength(der, tbsAt + 1);
  const algAt = tbsAt + 1 + tbsSize + tbsLength;
  const [algSize] = derLength(der, algAt + 1);
  const oidAt = algAt + 1 + algSize;
  if (der[oidAt] !== 0x06) return false;
  const [oidSize, oidLength] = derLength(der, oidAt + 1);
  const oid = der.subarray(oidAt + 1 + oidSize, oidAt + 1 + oidSize + oidLength);
  return oid.subarray(0, RSA_SIG_OID_PREFIX.length).equals(RSA_SIG_OID_PREFIX);
}

export function rootCertSn(bundlePem: string, what: string): string {
  const sns = parseCerts(bundlePem, what).filter(isRsaSigned).map(certSn);
  if (sns.length === 0) throw new KeyError(`${what}: the bundle holds no RSA-signed root certificate`);
  return sns.join('_');
}

export function loadCertMaterial(
  texts: { appCert: string; alipayRootCert: string; alipayCert: string },
  path: string,
): CertMaterial {
  const appCert = parseCerts(texts.appCert, `${path}.appCert`)[0]!;
  const alipayCert = parseCerts(texts.alipayCert, `${path}.alipayCert`)[0]!;
  if (alipayCert.publicKey.asymmetricKeyType !== 'rsa') {
    throw new KeyError(`${path}.alipayCert: expected a certificate for an RSA key`);
  }
  return {
    appCertSn: certSn(appCert),
    alipayRootCertSn: rootCertSn(texts.alipayRootCert, `${path}.alipayRootCert`),
    alipayCertSn: certSn(alipayCert),
    alipayPublicKey: alipayCert.publicKey,
    appPublicKey: appCert.publicKey,
  };
}
