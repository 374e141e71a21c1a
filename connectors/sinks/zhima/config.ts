import { z } from 'zod';
import { TRADE_CODES } from '../../../src/core/events.js';
import { sinkCommonShape } from '../../../src/config/sink-common.js';
import { secretRef } from '../../../src/config/secrets.js';

/**
 * Config of one `zhima.data.state.data.sync` sink. Lengths are the ones the API document
 * gives for the biz_content fields, checked here so a typo fails at load time, not per event.
 */

const column = () => z.string().min(1, 'expected a column name');

/** One biz_data output field: a column name, or a column with a type and optionality. */
const bizDataField = z.union([
  column(),
  z.strictObject({
    column: column(),
    /** How the value is written into biz_data; `string` also renders numbers and JSON values as text. */
    type: z.enum(['string', 'number', 'integer']).default('string'),
    /** An optional field is left out of biz_data when its column is null or absent. */
    optional: z.boolean().default(false),
  }),
]);

const endpoint = z.string().refine(
  (text) => {
    try {
      const url = new URL(text);
      return (url.protocol === 'https:' || url.protocol === 'http:') && url.search === '' && url.hash === '';
    } catch {
      return false;
    }
  },
  { message: 'expected an http(s) URL without query or fragment, e.g. https://openapi.alipay.com/gateway.do' },
);

export const zhimaSinkSchema = z
  .strictObject({
    kind: z.literal('zhima'),
    ...sinkCommonShape,
    /** Gateway URL: https://openapi.alipay.com/gateway.do (prod), https://openapi-sandbox.dl.alipaydev.com/gateway.do (sandbox). */
    endpoint,
    appId: z.string().regex(/^\d{1,32}$/, 'expected the numeric Alipay app id (at most 32 digits)'),
    /** App private key, PEM (PKCS#1 or PKCS#8) or bare base64. */
    privateKey: secretRef(),
    /** Alipay public key (SPKI PEM or bare base64); not needed in cert mode. */
    alipayPublicKey: secretRef().optional(),
    /** Public-key-certificate mode: PEM texts of the three certificates. */
    certMode: z
      .strictObject({ appCert: secretRef(), alipayRootCert: secretRef(), alipayCert: secretRef() })
      .optional(),
    /** Only when calling on behalf of a merchant (ISV). */
    appAuthToken: secretRef().optional(),
    /** Column holding the Alipay user id (2088…). */
    userIdColumn: column(),
    /** Column holding out_principal_id (e.g. the movie id). */
    principalIdColumn: column(),
    categoryCode: z.string().min(1).max(64),
    serviceId: z.string().min(1).max(128),
    /** Event code → biz_state_code; only mapped codes are sent. */
    states: z
      .partialRecord(z.enum(TRADE_CODES), z.string().min(1).max(64))
      .refine((states) => Object.keys(states).length > 0, { message: 'map at least one event code to a biz_state_code' }),
    /** biz_data output field → column (in output order). */
    bizData: z.record(z.string().min(1), bizDataField),
  })
  .superRefine((config, ctx) => {
    if (config.alipayPublicKey === undefined && config.certMode === undefined) {
      ctx.addIssue({ code: 'custom', path: ['alipayPublicKey'], message: 'alipayPublicKey is required unless certMode is set' });
    }
  });

export type ZhimaSinkConfig = z.infer<typeof zhimaSinkSchema>;
/** The config as written (durations as text, defaults not yet applied). */
export type ZhimaSinkConfigInput = z.input<typeof zhimaSinkSchema>;
export type BizDataField = ZhimaSinkConfig['bizData'][string];
