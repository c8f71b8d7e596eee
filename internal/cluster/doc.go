// Package cluster is a test harness that runs an etcd cluster and broker
// replicas as real processes on loopback, so that fault tests can kill,
// freeze and restart them.
//
// Children are the test binary itself, re-executed with EnvRole selecting
// what it runs: an embedded etcd member (RoleEtcd) or a broker replica
// (RoleReplica: broker.New + broker.Run + server.New, plaintext gRPC,
// authentication off), configured by JSON in EnvConfig. A package that uses
// the harness calls MaybeRunRole first thing in its TestMain:
//
//	func TestMain(m *testing.M) {
//		cluster.MaybeRunRole()
//		os.Exit(m.Run())
//	}
//
// Then:
//
//	etcd := cluster.StartEtcd(t, 3)
//	adobe := cluster.StartAdobe(t, fakeadobe.Options{}) // in the test process
//	rs := cluster.StartReplicas(t, etcd, 2, cluster.ReplicaConfig{
//		Connections: []broker.ConnectionConfig{adobe.Connection("demo")},
//	})
//	leader := rs.MustLeader(time.Minute)
//	rs.Kill(leader) // SIGKILL; also Term, Pause/Resume, Restart
//	etcd.Kill(0)    // also Stop/Cont, Restart
//
// Every child runs in its own process group and dies with the test:
// t.Cleanup kills it, and on Linux the kernel does too if the test process
// dies (Pdeathsig). Its output goes to a file in t.TempDir() (or under
// EnvLogDir), printed when the test fails; a data race reported in a child
// fails the test. Waits poll health and status with deadlines, never fixed
// sleeps.
//
// Setting EnvCrashAfterTokenCall=1 in a replica (ReplicaConfig.
// CrashAfterTokenCall) makes it exit with CrashExitCode right after the
// identity provider answered a refresh and before the answer is stored.
package cluster
