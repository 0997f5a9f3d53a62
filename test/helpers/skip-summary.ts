// A node:test reporter for `npm test`, beside the spec reporter: one closing line saying how many tests
// skipped and why (each skip's reason is the missing optional tool), so a skip is never silent.
// Node loads a reporter as its module's default export, hence the one default export in this repository.

interface TestEvent {
  readonly type: string;
  readonly data: { readonly skip?: string | boolean; readonly details?: { readonly type?: string } };
}

export default async function* skipSummary(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const reasons = new Map<string, number>();
  let tests = 0;
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    if (event.data.details?.type === 'suite') continue;
    tests += 1;
    const skip = event.data.skip;
    if (skip === undefined || skip === false) continue;
    const reason = typeof skip === 'string' && skip !== '' ? skip : 'skipped without a reason';
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  }
  const skipped = [...reasons.values()].reduce((a, b) => a + b, 0);
  if (skipped === 0) {
    yield `skipped: none of ${tests} tests\n`;
    return;
  }
  const why = [...reasons].sort((a, b) => b[1] - a[1]).map(([reason, n]) => `${n} × ${reason}`);
  yield `skipped ${skipped} of ${tests} tests: ${why.join('; ')}\n`;
}
