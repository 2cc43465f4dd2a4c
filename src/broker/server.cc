#include "broker/server.h"

#include <malloc.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <thread>

#include "broker/routes.h"
#include "net/http.h"
#include "store/store.h"

namespace grid::broker {

int RunServer(ServerOptions o) {
  size_t colon = o.listen.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "grid broker: --listen: expected HOST:PORT, got \"%s\"\n", o.listen.c_str());
    return 2;
  }
  std::string host = o.listen.substr(0, colon);
  int port = -1;
  try {
    port = std::stoi(o.listen.substr(colon + 1));
  } catch (...) {
  }
  if (port < 0 || port > 65535) {
    std::fprintf(stderr, "grid broker: --listen: bad port in \"%s\"\n", o.listen.c_str());
    return 2;
  }

  // glibc malloc serves an answer's body (a search's JSON is often over
  // 128 KiB) with a fresh mmap and returns it on free, so every such request
  // paid ~30 page faults plus zeroing; and with the HTTP threads allocating at
  // once, its arenas trimmed and regrew their heaps. Measured: 10.7% of the
  // broker's CPU in memset and 5% in page-table writes, 5.6k req/s against
  // 9.3k with these settings (bench/RESULTS.md, search_http). Bodies up to
  // 32 MiB come from the arenas, which keep up to 128 MiB free before
  // trimming. Advice only: a failure changes nothing.
  // The arenas are capped at 8 (glibc's default is 8 per core), so what they
  // keep is bounded by about 8 x 128 MiB however many cores the host has.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
  mallopt(M_ARENA_MAX, 8);

  // Block the signals in every thread; this one waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto store = store::OpenStore(o.db);
  if (!store.ok()) {
    std::fprintf(stderr, "grid broker: %s\n", store.status().message().c_str());
    return 1;
  }
  SystemClock clock;
  auto broker = Broker::Open(std::move(store).value(), &clock, o.broker);
  if (!broker.ok()) {
    std::fprintf(stderr, "grid broker: %s\n", broker.status().message().c_str());
    return 1;
  }
  std::shared_ptr<const ChainApi> chain;
  if (o.start_chain) {
    auto c = o.start_chain(**broker, &clock);
    if (!c.ok()) {
      std::fprintf(stderr, "grid broker: %s\n", c.status().message().c_str());
      return 1;
    }
    chain = *c;
    std::fprintf(stderr, "grid broker: chain %llu, token %s, treasury %s, %llu confirmation(s)\n",
                 static_cast<unsigned long long>(chain->chain_id), chain->token.c_str(), chain->treasury.c_str(),
                 static_cast<unsigned long long>(chain->confirmations));
  }
  net::HttpServerOptions ho;
  ho.host = host;
  ho.port = static_cast<uint16_t>(port);
  ho.threads = o.threads;
  auto server = net::HttpServer::Start(ho, MakeApiHandler(broker->get(), chain));
  if (!server.ok()) {
    std::fprintf(stderr, "grid broker: %s\n", server.status().message().c_str());
    return 1;
  }
  std::string endpoint = host + ":" + std::to_string((*server)->port());
  if ((*broker)->options().domain.empty()) (*broker)->SetEndpoint(endpoint, "http://" + endpoint);
  if (o.broker.dev) std::fprintf(stderr, "grid broker: --dev: the faucet is open; do not use with real money\n");
  std::printf("grid broker listening on http://%s\n", endpoint.c_str());
  std::fflush(stdout);

  // The ticker: host checks every heartbeat period (or tick, if shorter),
  // settlement every tick. Replicas (a shared store): every replica checks
  // its hosts, only the leader ends leases, settles and keeps house, and
  // leadership is asked for each second, so a dead leader's work is taken
  // over within about a second of the database freeing its lock.
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  const bool replicated = (*broker)->Replicated();
  std::thread ticker([&] {
    const int64_t check_ms = std::min(o.broker.tick_ms, o.broker.heartbeat_ms);
    const int64_t wake_ms = replicated ? std::min<int64_t>(check_ms, 1000) : check_ms;
    int64_t since_settle_ms = 0, since_check_ms = 0;
    bool leading = false;
    std::unique_lock lock(mu);
    int64_t sleep_ms = 0;  // leadership is settled at once
    while (!cv.wait_for(lock, std::chrono::milliseconds(sleep_ms), [&] { return stopping; })) {
      lock.unlock();
      since_settle_ms += sleep_ms;
      since_check_ms += sleep_ms;
      bool leader = (*broker)->CheckLeadership();
      if (replicated && leader != leading) {
        std::fprintf(stderr, "grid broker: %s\n",
                     leader ? "this replica leads: it runs settlement, host checks and the chain"
                            : "another replica leads now");
        leading = leader;
      }
      if (since_check_ms >= check_ms) {
        since_check_ms = 0;
        Status h = (*broker)->CheckHosts(/*end_lost_leases=*/leader);
        if (!h.ok()) std::fprintf(stderr, "grid broker: host check: %s\n", h.ToString().c_str());
      }
      // Wake for the next settlement exactly, not at the next multiple of wake_ms.
      if (since_settle_ms >= o.broker.tick_ms) {
        since_settle_ms = 0;
        if (leader) {
          Status s = (*broker)->SettleAll();
          if (!s.ok()) std::fprintf(stderr, "grid broker: settlement: %s\n", s.ToString().c_str());
          Status m = (*broker)->Maintain();
          if (!m.ok()) std::fprintf(stderr, "grid broker: housekeeping: %s\n", m.ToString().c_str());
        }
      }
      sleep_ms = std::min({wake_ms, o.broker.tick_ms - since_settle_ms, check_ms - since_check_ms});
      lock.lock();
    }
  });
  // Replicas: follow the others' commits as they happen (LISTEN/NOTIFY), so
  // this replica's offer index and long-polling agents see them at once.
  std::thread watcher;
  if (replicated) {
    watcher = std::thread([&] {
      std::string last_error;
      for (;;) {
        {
          std::lock_guard lock(mu);
          if (stopping) return;
        }
        Status s = (*broker)->FollowChanges(500);
        if (!s.ok()) {
          if (s.message() != last_error)
            std::fprintf(stderr, "grid broker: following other replicas: %s\n", s.ToString().c_str());
          std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the database is down: no busy loop
        }
        last_error = s.ok() ? "" : s.message();
      }
    });
  }

  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "grid broker: signal %d, shutting down\n", sig);
  {
    std::lock_guard lock(mu);
    stopping = true;
  }
  cv.notify_all();
  ticker.join();
  if (watcher.joinable()) watcher.join();
  (*server)->Stop();
  chain.reset();  // the treasury's thread stops before the broker goes
  return 0;
}

}  // namespace grid::broker
