import { oneLine, program } from './program.js';

// Every failure ends here: a non-zero exit and one line on stderr naming the command.
await program.parseAsync(process.argv).catch((err: unknown) => {
  const command = process.argv.slice(2).find((a) => !a.startsWith('-'));
  process.stderr.write(`order-relay${command && program.commands.some((c) => c.name() === command) ? ` ${command}` : ''}: ${oneLine(err)}\n`);
  process.exit(1);
});
