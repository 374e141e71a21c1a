import { z } from 'zod';
import { secretRef } from '../../../src/config/secrets.js';
import { sinkCommonShape } from '../../../src/config/sink-common.js';
import { duration } from '../../../src/config/units.js';

/** A column name in the order (or refund) row. */
const column = () => z.string().min(1, 'expected a column name');

const userColumn = z.strictObject({
  column: column(),
  type: z.enum(['PHONE', 'ALIPAY_LOGON_ID']),
});

/** YAML turns `projectId: 123` into a number; the wire wants the string. */
const projectId = z
  .union([z.string().min(1), z.number().int().nonnegative()])
  .transform((value) => String(value));

export const antchainSinkSchema = z
  .strictObject({
    kind: z.literal('antchain'),
    ...sinkCommonShape,
    /** The gateway: a base URL (`https://openapi.antchain.antgroup.com`) or the full `…/gateway.do` URL. */
    endpoint: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }),
    /** `ent-sit` (test) or `ent-prod` (production); sent as `product_instance_id`. */
    productInstanceId: z.string().min(1),
    accessKey: secretRef(),
    accessSecret: secretRef(),
    projectId,
    /** How TRADE_SUCCESS is credited: timed (`TWO_STEP`) or by a later TRADE_CONFIRM (`TWO_STEP_MANUAL`). */
    confirmType: z.enum(['TWO_STEP', 'TWO_STEP_MANUAL']),
    /** When a TWO_STEP credit becomes final: a timestamp column, plus an optional offset. */
    confirmTime: z.strictObject({ column: column(), offset: duration().optional() }).optional(),
    buyer: userColumn,
    sharer: userColumn.optional(),
    order: z.strictObject({
      orderNo: column(),
      originalAmount: column(),
      actualAmount: column(),
      itemCount: column(),
    }),
    /** Amount columns for REFUND_SUCCESS, read from the refund row when the event has one, else the order row. */
    refund: z
      .strictObject({
        originalAmount: column(),
        actualAmount: column(),
        itemCount: column(),
      })
      .optional(),
    /** Unit of the amount columns; yuan values ("12.50") are converted to integer fen exactly. */
    amountUnit: z.enum(['fen', 'yuan']).default('fen'),
    /** Informational, signed like any parameter. Defaults are the values the golden vectors use. */
    sdkVersion: z.string().min(1).default('ts-undici-1.0.0'),
    baseSdkVersion: z.string().min(1).default('3.4.0'),
  })
  .superRefine((config, ctx) => {
    if (config.confirmType === 'TWO_STEP' && config.confirmTime === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['confirmTime'],
        message: 'confirmTime ({ column, offset? }) is required when confirmType is TWO_STEP',
      });
    }
  });

export type AntchainSinkConfig = z.output<typeof antchainSinkSchema>;
export type AntchainSinkConfigInput = z.input<typeof antchainSinkSchema>;
