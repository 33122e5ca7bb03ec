// Octokit through the signet agent: driven by the `agent` tests in cli.rs.
//
// Reads GITHUB_API_URL and GITHUB_TOKEN (a dummy: the agent drops it), as
// `signet agent env` sets them, and prints one JSON object of what it saw.

import { Octokit } from "@octokit/rest";

const octokit = new Octokit({
  baseUrl: process.env.GITHUB_API_URL,
  auth: process.env.GITHUB_TOKEN,
  log: { debug() {}, info() {}, warn() {}, error: console.error },
});

const { data: repo } = await octokit.rest.repos.get({ owner: "o", repo: "r" });
const issues = await octokit.paginate(octokit.rest.issues.listForRepo, {
  owner: "o",
  repo: "r",
  per_page: 2,
});
// A URL template from the body, followed as octokit users do.
const { data: third } = await octokit.request(
  `GET ${repo.issues_url.replace("{/number}", "/3")}`,
);

console.log(
  JSON.stringify({
    full_name: repo.full_name,
    url: repo.url,
    issues: issues.map((issue) => issue.number),
    third_url: third.url,
  }),
);
