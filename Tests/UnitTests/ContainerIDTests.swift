import InfraSightCore
import Testing

@Suite struct ContainerIDTests {
    static let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

    @Test(arguments: [
        "/docker/\(id)",                                                           // docker, cgroupfs driver
        "/system.slice/docker-\(id).scope",                                        // docker, systemd driver
        "/system.slice/containerd.service/kubepods-burstable-pod1234.slice:cri-containerd:\(id)".replacingOccurrences(of: ":cri-containerd:", with: "/cri-containerd-") + ".scope",
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod5678.slice/cri-containerd-\(id).scope", // containerd/CRI
        "/kubepods/besteffort/pod5678/\(id)",                                      // kubepods, cgroupfs
        "/kubepods.slice/kubepods-pod5678.slice/crio-\(id).scope",                 // CRI-O
        "/machine.slice/libpod-\(id).scope",                                       // podman, systemd
        "/libpod_parent/libpod-\(id)",                                             // podman, cgroupfs
        "/docker/\(id)/nested/child",                                              // a cgroup inside a container
    ])
    func findsTheContainerID(path: String) {
        #expect(ContainerID.find(in: path) == Self.id)
    }

    @Test(arguments: [
        "/", "/system.slice/ssh.service", "/user.slice/user-1000.slice/session-3.scope",
        "/docker/0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF", // not lower-case hex
        "/docker/0123456789abcdef", "/docker-\(id)x.scope",
    ])
    func findsNoneWhereThereIsNone(path: String) {
        #expect(ContainerID.find(in: path) == nil)
    }
}
