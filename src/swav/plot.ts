// A loss curve as a standalone SVG a person can open in any browser: raw losses, a
// moving average, and ln K (where a collapsed model sits) as a dashed line.

export function lossCurveSvg(points: { step: number; loss: number }[], k: number,
  title = 'SwAV training loss'): string {
  const W = 720;
  const H = 360;
  const pad = { l: 56, r: 16, t: 32, b: 40 };
  const finite = points.filter((p) => Number.isFinite(p.loss));
  const lnK = Math.log(k);
  const lo = Math.min(lnK, ...finite.map((p) => p.loss)) - 0.1;
  const hi = Math.max(lnK, ...finite.map((p) => p.loss)) + 0.1;
  const maxStep = Math.max(1, ...finite.map((p) => p.step));
  const x = (s: number) => pad.l + (s / maxStep) * (W - pad.l - pad.r);
  const y = (v: number) => pad.t + (1 - (v - lo) / (hi - lo)) * (H - pad.t - pad.b);
  const line = (ps: { step: number; loss: number }[]) =>
    ps.map((p, i) => `${i ? 'L' : 'M'}${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join('');
  const window = Math.max(1, Math.round(finite.length / 50));
  const smooth = finite.map((p, i) => {
    const from = Math.max(0, i - window + 1);
    const slice = finite.slice(from, i + 1);
    return { step: p.step, loss: slice.reduce((a, q) => a + q.loss, 0) / slice.length };
  });
  const ticks: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    ticks.push(`<text x="${pad.l - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>`);
    const s = Math.round((maxStep * i) / 4);
    ticks.push(`<text x="${x(s)}" y="${H - pad.b + 18}" text-anchor="middle">${s}</text>`);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" ` +
    `font-family="sans-serif" font-size="12">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${title}</text>
<line x1="${pad.l}" y1="${H - pad.b}" x2="${W - pad.r}" y2="${H - pad.b}" stroke="#444"/>
<line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${H - pad.b}" stroke="#444"/>
${ticks.join('\n')}
<text x="${W / 2}" y="${H - 6}" text-anchor="middle">step</text>
<line x1="${pad.l}" y1="${y(lnK)}" x2="${W - pad.r}" y2="${y(lnK)}" stroke="#c33"
 stroke-dasharray="6 4"/>
<text x="${W - pad.r - 4}" y="${y(lnK) - 6}" text-anchor="end" fill="#c33">
ln K = ${lnK.toFixed(2)} (collapse)</text>
<path d="${line(finite)}" fill="none" stroke="#9bc" stroke-width="1"/>
<path d="${line(smooth)}" fill="none" stroke="#147" stroke-width="2"/>
</svg>
`;
}
